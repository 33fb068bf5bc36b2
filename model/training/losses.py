"""Per-task training losses for dense prediction.

Units follow :mod:`deltamtl.model.training.vit`: the depth head predicts metres while the data
set gives millimetres (converted here); normals are normalised before comparison; edges
and semseg are logits.  Invalid pixels (depth <= 0, zero normals, IGNORE_INDEX labels) are
excluded.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

MM_PER_M = 1000.0
EDGE_POS_WEIGHT_MAX = 50.0  # caps the balanced weight on batches with almost no edge pixels


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def semseg_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Cross-entropy over labels [B,H,W] (int64), ignoring ``ignore_index``."""
    if (target != ignore_index).sum() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


def depth_loss(pred_m: torch.Tensor, target_mm: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Depth loss on metres. ``l1``; ``silog`` (scale-invariant log, lambda 0.85);
    ``berhu`` (reverse Huber, c = 0.2 * max |error| of the batch, as in Laina et al.)."""
    target = target_mm / MM_PER_M
    valid = torch.isfinite(target) & (target > 0)
    if kind == "l1":
        return _masked_mean((pred_m - target).abs(), valid)
    if kind == "berhu":
        err = (pred_m - torch.where(valid, target, pred_m.detach())).abs()
        c = (0.2 * err.detach().max()).clamp_min(1e-6)
        per = torch.where(err <= c, err, (err**2 + c**2) / (2 * c))
        return _masked_mean(per, valid)
    if kind == "silog":
        log_pred = torch.log(pred_m.clamp_min(1e-3))
        log_tgt = torch.log(torch.where(valid, target, torch.ones_like(target)))
        d = (log_pred - log_tgt) * valid
        n = valid.sum().clamp_min(1)
        return torch.sqrt(((d**2).sum() / n - 0.85 * (d.sum() / n) ** 2).clamp_min(1e-8))
    raise ValueError(f"unknown depth loss {kind!r}")


def normals_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Loss between predicted 3-vectors [B,3,H,W] (normalised here) and unit targets."""
    valid = target.norm(dim=1) > 0.5
    unit = F.normalize(pred, dim=1, eps=1e-6)
    if kind == "cosine":
        return _masked_mean(1.0 - (unit * target).sum(dim=1), valid)
    if kind == "l1":
        return _masked_mean((unit - target).abs().sum(dim=1), valid)
    raise ValueError(f"unknown normals loss {kind!r}")


def edges_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float | str = "balanced") -> torch.Tensor:
    """Binary cross-entropy on edge logits [B,1,H,W]; positives weighted by #neg/#pos
    of the batch when ``pos_weight == 'balanced'`` (edges are a few percent of pixels)."""
    target = target.to(logits.dtype)
    if pos_weight == "balanced":
        pos = target.sum()
        neg = target.numel() - pos
        w = (neg / pos.clamp_min(1.0)).clamp(1.0, EDGE_POS_WEIGHT_MAX)
    else:
        w = torch.tensor(float(pos_weight), dtype=logits.dtype, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=w)


def task_loss(task: str, output: torch.Tensor, batch: Mapping[str, torch.Tensor], train_cfg: Mapping,
              ignore_index: int) -> torch.Tensor:
    """The configured loss of one task's head output against ``batch[task]``."""
    target = batch[task]
    if task == "semseg":
        return semseg_loss(output, target, ignore_index)
    if task == "depth":
        return depth_loss(output, target, train_cfg["depth_loss"])
    if task == "normals":
        return normals_loss(output, target, train_cfg["normals_loss"])
    if task == "edges":
        return edges_loss(output, target, train_cfg["edge_pos_weight"])
    raise ValueError(f"no loss for task {task!r}")
