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
from deltamtl.contract.errors import UserInputError, one_line
from deltamtl.model.tasks import TASKS

CHECKPOINT_FORMAT = "deltamtl-ckpt-1"
REQUIRED_KEYS = ("format", "model", "step", "config", "recipe", "tasks")


class CheckpointError(UserInputError):
    """A checkpoint file is missing, unreadable, of the wrong format or for another model;
    the one-line message names the file and what is wrong."""


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
    """Load and sanity-check a checkpoint written by :mod:`deltamtl.model.training.train`.

    Every failure is a one-line :class:`CheckpointError` naming the file: missing, a folder,
    truncated or not a torch file, not a deltamtl checkpoint, a missing or mistyped field."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated or foreign file
        first = one_line(str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, or not written by "
                              f"torch.save): {type(exc).__name__}: {first[:160]}") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a deltamtl checkpoint (top level is {type(ckpt).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a deltamtl checkpoint: missing field(s) {', '.join(missing)}")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: format {ckpt['format']!r}, expected {CHECKPOINT_FORMAT!r}")
    state, tasks, step = ckpt["model"], ckpt["tasks"], ckpt["step"]
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path}: field model: expected a state dict of tensors")
    if not isinstance(ckpt["config"], dict):
        raise CheckpointError(f"{path}: field config: expected a mapping, got {type(ckpt['config']).__name__}")
    if not isinstance(tasks, (list, tuple)) or not tasks or any(t not in TASKS for t in tasks):
        raise CheckpointError(f"{path}: field tasks: expected task names from {TASKS}, got {tasks!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{path}: field step: expected an integer >= 0, got {step!r}")
    return ckpt


def config_difference(theirs: Any, ours: Any, prefix: str) -> str | None:
    """The first dotted key where a checkpoint's config section differs from the given one
    ('model.embed_dim: checkpoint 96, config 128'), or None when they are equal."""
    if isinstance(theirs, dict) and isinstance(ours, dict):
        for key in [*ours, *(k for k in theirs if k not in ours)]:
            if key not in theirs:
                return f"{prefix}.{key}: not in the checkpoint, config {ours[key]!r}"
            if key not in ours:
                return f"{prefix}.{key}: checkpoint {theirs[key]!r}, not in the config"
            found = config_difference(theirs[key], ours[key], f"{prefix}.{key}")
            if found:
                return found
        return None
    return None if theirs == ours else f"{prefix}: checkpoint {theirs!r}, config {ours!r}"


def state_mismatch(model: torch.nn.Module, state: dict) -> str | None:
    """What keeps ``state`` from loading into ``model`` (one line), or None when it fits."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = []

    def listed(keys: list[str]) -> str:
        more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
        return ", ".join(keys[:3]) + more

    if shapes:
        k, theirs, ours = shapes[0]
        more = f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else ""
        parts.append(f"shape of {k}: checkpoint {list(theirs)}, model {list(ours)}{more}")
    if missing:
        parts.append(f"missing {len(missing)} key(s) {listed(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) {listed(unexpected)}")
    return "; ".join(parts) or None


def load_model_state(model: torch.nn.Module, state: dict, path: str | os.PathLike) -> None:
    """``model.load_state_dict(state)``, or a one-line :class:`CheckpointError` naming
    ``path`` and the first mismatches (shapes, missing and unexpected keys) instead of
    torch's multi-line RuntimeError: the checkpoint was trained for another model."""
    problem = state_mismatch(model, state)
    if problem is not None:
        raise CheckpointError(f"{path}: weights do not fit the model built from the config "
                              f"(another architecture or config?): {problem}")
    model.load_state_dict(state)


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
