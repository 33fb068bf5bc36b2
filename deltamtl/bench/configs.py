"""Models of the larger configs for counting only: built once per run on PyTorch's meta
device (shapes and parameter counts without memory or random initialisation; the flop
counter runs on meta tensors too), so a ViT-B costs a fraction of a second, not tens."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from deltamtl.model.tasks import BASE_TASK, SUB_TASKS

TASKS = (BASE_TASK, *SUB_TASKS)


@lru_cache(maxsize=8)
def meta_model(config: str, overrides: tuple[str, ...] = (), tasks: tuple[str, ...] = TASKS):
    """``config``'s multi-task ViT on the meta device (cached per arguments)."""
    import torch
    from deltamtl.model.config import load_config
    from deltamtl.model.training.vit import build_model

    cfg = load_config(Path(config), list(overrides))
    with torch.device("meta"):
        return build_model(cfg, tasks)


@lru_cache(maxsize=32)
def head_macs(config: str, task: str, overrides: tuple[str, ...] = ()) -> int:
    """MACs of one task head per image (model/sharing/accounting.py's flop count)."""
    from deltamtl.model.sharing.accounting import head_macs as count

    return int(count(meta_model(config, overrides), task))
