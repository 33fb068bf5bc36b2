"""Density measurement (S_w, S_a1, S_a2 per layer), threshold calibration, layer boundary.

* S_w[l]:  non-zero fraction of a sub-task's deltas (weights and biases) in block l.
* S_a1[l]: kept fraction of the task-domain input deltas d = keep(x_k - x_ref_b) at the
           sites of block l (all frames run with task reuse at every block).
* S_a2[l]: kept fraction of the temporal input deltas d = keep(x_k - x_ref_k) at block l
           (non-keyframes, all blocks temporal).

Both activation densities come from running the real threshold-inference engine on
validation clips under the deployed thresholds and keyframe interval, so they include the
"last value sent" reference semantics. The boundary l_k is then chosen to minimise the
executed MACs of the sub-task: task reuse for blocks <= l_k, temporal above. With equal
in/out widths this is the paper's comparison of (S_w + S_a1) P D^2 against S_a2 P D^2,
but it is measured on the MACs the engine executed per block, so the sites' real widths
(qkv 3D, fc1 4D) and the x dW^T term are weighted correctly. Keyframe costs are equal in
both runs (TASK at every block), so only non-keyframes decide.

Thresholds are per (task, block): th = rel * mean |x| over the block's site inputs of that
task, measured densely on calibration clips, with one relative level ``rel`` per task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from deltamtl.model.sharing.accounting import weight_density
from deltamtl.model.sharing.reuse import Policy, ReuseEngine, clip_frames
from deltamtl.model.sharing.subtasks import block_sites
from deltamtl.model.tasks import BASE_TASK
from deltamtl.model.training.vit import MultiTaskViT


@torch.no_grad()
def site_input_scale(model: MultiTaskViT, frames: torch.Tensor, task: str) -> list[float]:
    """Mean |x| per block over the inputs of that block's sites, on dense forward passes."""
    sums = [0.0] * len(model.encoder.blocks)
    counts = [0] * len(model.encoder.blocks)
    handles = []
    for b, _, m in block_sites(model):
        def hook(_m, args, b=b):
            sums[b] += float(args[0].abs().sum())
            counts[b] += args[0].numel()
        handles.append(m.register_forward_pre_hook(hook))
    try:
        for f in frames:
            model(f, task=task)
    finally:
        for h in handles:
            h.remove()
    return [s / c for s, c in zip(sums, counts, strict=True)]


def calibrate_thresholds(base: MultiTaskViT, subs: Mapping[str, MultiTaskViT], clips: Sequence,
                         rel: Mapping[str, float]) -> dict[str, list[float]]:
    """Per-(task, block) thresholds th = rel[task] * mean |site input| of that block."""
    frames, _ = clip_frames(clips)
    frames = frames.to(base.pixel_mean.device, base.pixel_mean.dtype)
    out = {}
    for task, model in [(BASE_TASK, base), *subs.items()]:
        r = float(rel.get(task, 0.0))
        if r < 0:
            raise ValueError(f"relative threshold of {task} must be >= 0, got {r!r}")
        out[task] = [r * s for s in site_input_scale(model, frames, task)]
    return out


def choose_boundary(cost_task: Sequence[float], cost_temporal: Sequence[float]) -> int:
    """l in [-1, L-1] minimising sum_{b<=l} cost_task[b] + sum_{b>l} cost_temporal[b]."""
    if len(cost_task) != len(cost_temporal) or not cost_task:
        raise ValueError("choose_boundary: cost lists must be non-empty and of equal length")
    best_l, best = -1, float(sum(cost_temporal))
    running = best
    for b in range(len(cost_task)):
        running += cost_task[b] - cost_temporal[b]
        if running < best:
            best_l, best = b, running
    return best_l


@dataclass
class LayerDensities:
    """Per-block densities and per-block executed MACs of one sub-task (lists over blocks)."""

    s_w: list[float]
    s_a1: list[float]
    s_a2: list[float]
    macs_task: list[float]
    macs_temporal: list[float]
    boundary: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _block_macs(ledger, task: str, depth: int) -> list[float]:
    per = [0.0] * depth
    for (t, b, _s, _mode), v in ledger.macs.items():
        if t == task and 0 <= b < depth:
            per[b] += v
    return [v / max(ledger.frames, 1) for v in per]


@torch.no_grad()
def measure_densities(base: MultiTaskViT, subs: Mapping[str, MultiTaskViT], clips: Sequence,
                      thresholds: Mapping[str, list[float]], keyframe_interval: int,
                      sparse_exec: bool = True) -> tuple[dict[str, LayerDensities], dict[str, list[float]]]:
    """Densities and the MAC-minimising boundary per sub-task; also the base's S_a2 per block."""
    depth = len(base.encoder.blocks)
    frames, _ = clip_frames(clips)
    frames = frames.to(base.pixel_mean.device, base.pixel_mean.dtype)
    ledgers = {}
    for name, bound in (("task", depth - 1), ("temporal", -1)):
        policy = Policy(depth=depth, keyframe_interval=keyframe_interval,
                        boundaries={t: bound for t in subs}, thresholds=dict(thresholds))
        eng = ReuseEngine(base, subs, policy, count_dense_extras=False, sparse_exec=sparse_exec)
        with eng:
            for _ in eng.run_clip(frames):
                pass
        ledgers[name] = eng.ledger
    out = {}
    for task, model in subs.items():
        sw = weight_density(model)
        lt, lm = ledgers["task"], ledgers["temporal"]
        cost_task, cost_temp = _block_macs(lt, task, depth), _block_macs(lm, task, depth)
        out[task] = LayerDensities(
            s_w=[sw[b] for b in range(depth)],
            s_a1=[lt.density(task, b, "TASK") for b in range(depth)],
            s_a2=[lm.density(task, b, "TEMPORAL") for b in range(depth)],
            macs_task=cost_task, macs_temporal=cost_temp,
            boundary=choose_boundary(cost_task, cost_temp),
        )
    base_s_a2 = {BASE_TASK: [ledgers["task"].density(BASE_TASK, b, "TEMPORAL") for b in range(depth)]}
    return out, base_s_a2
