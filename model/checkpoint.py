"""Checkpoint files: atomic writes, RNG state capture, and a versioned payload.

A training checkpoint is a dict saved with ``torch.save``::

    format        CHECKPOINT_FORMAT
    model         state_dict of the unwrapped model
    optimizer     AdamW state_dict          scheduler  LambdaLR state_dict
    step          optimizer steps done      config     the full config dict
    recipe        registry name, e.g. "st"  task       the --task argument (or None)
    tasks         tuple of the model's task names
    recipe_state  Recipe.state_dict()       rng        per-rank RNG states (list)
    metrics       last validation metrics (or {})
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from deltamtl.contract.atomic import atomic_path

CHECKPOINT_FORMAT = "deltamtl-ckpt-1"
REQUIRED_KEYS = ("format", "model", "step", "config", "recipe", "tasks")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or of the wrong format."""


def json_safe(obj: Any) -> Any:
    """Nested dicts/lists with NaN and infinities replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and sanity-check a checkpoint written by :mod:`deltamtl.model.training.train`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # corrupt or foreign file
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a deltamtl checkpoint (top level is {type(ckpt).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: missing field(s) {', '.join(missing)}")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: format {ckpt['format']!r}, expected {CHECKPOINT_FORMAT!r}")
    return ckpt


def capture_rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
