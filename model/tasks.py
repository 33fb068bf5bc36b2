"""The tasks and the accelerator sites: the one definition every level imports.

The base task runs every site densely (or temporally); each sub-task shares the base's
weights plus sparse deltas (docs/architecture.md). A site is one linear layer the
accelerator runs: the patch embedding, then four per encoder block.
"""

from __future__ import annotations

# Every dense task of the multi-task model, base first (the data, the heads and the reports
# use this order).
TASKS = ("semseg", "depth", "normals", "edges")


BASE_TASK = TASKS[0]


SUB_TASKS = TASKS[1:]


# Output channels of the dense heads whose width does not depend on the data set (semseg has
# model.num_classes): the ViT builds its heads with these, the bundle loader checks them.
TASK_OUT_CHANNELS_FIXED = {"depth": 1, "normals": 3, "edges": 1}


EMBED = "patch_embed"


BLOCK_SITES = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def site_name(layer: int, site: str) -> str:
    """Canonical site name: ``patch_embed`` or ``blocks.<layer>.<site>``."""
    return EMBED if layer < 0 else f"blocks.{layer}.{site}"


def site_order(depth: int) -> list[tuple[int, str]]:
    """(layer, site) in execution order; the patch embedding is layer -1."""
    return [(-1, EMBED)] + [(b, s) for b in range(depth) for s in BLOCK_SITES]
