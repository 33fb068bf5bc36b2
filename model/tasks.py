"""Names every stage shares: the base task and the sub-tasks, the linear sites of a block,
and the canonical site names and their execution order.
"""

from __future__ import annotations

BASE_TASK = "semseg"


EMBED = "patch_embed"


BLOCK_SITES = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def site_name(layer: int, site: str) -> str:
    """Canonical site name: ``patch_embed`` or ``blocks.<layer>.<site>``."""
    return EMBED if layer < 0 else f"blocks.{layer}.{site}"


def site_order(depth: int) -> list[tuple[int, str]]:
    """(layer, site) in execution order; the patch embedding is layer -1."""
    return [(-1, EMBED)] + [(b, s) for b in range(depth) for s in BLOCK_SITES]
