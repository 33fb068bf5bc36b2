"""Training-time augmentation of sample batches (dict of [B,...] tensors).

Horizontal flip is exact for every task: labels, depth and edges mirror; a camera-frame
normal (x right, y down, z forward) mirrors with its x component negated.
"""

from __future__ import annotations

from typing import Any

import torch

IMAGE_KEYS = ("image", "image_tau")     # [B,3,H,W] inputs
MAP_KEYS = ("semseg", "depth", "edges")  # flipped along the last axis
NORMAL_KEYS = ("normals",)               # [B,3,H,W], x component negated when flipped


def hflip_batch(batch: dict[str, Any], p: float = 0.5) -> dict[str, Any]:
    """Mirror each sample with probability ``p`` (torch's global RNG, so seeded runs and
    resumed runs draw the same flips). Paired frames (``image_tau``) flip with their sample."""
    b = batch["image"].shape[0]
    flip = torch.rand(b) < p
    if not bool(flip.any()):
        return batch
    out = dict(batch)
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor) or value.ndim < 3 or value.shape[0] != b:
            continue
        if key not in IMAGE_KEYS + MAP_KEYS + NORMAL_KEYS:
            continue
        mask = flip.to(value.device).view(b, *([1] * (value.ndim - 1)))
        mirrored = value.flip(-1)
        if key in NORMAL_KEYS:
            sign = torch.tensor([-1.0, 1.0, 1.0], dtype=value.dtype, device=value.device).view(1, 3, 1, 1)
            mirrored = mirrored * sign
        out[key] = torch.where(mask, mirrored, value)
    return out
