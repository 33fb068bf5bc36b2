"""Evaluation: every metric of a model's tasks, next to trivial baselines.

The command line (``deltamtl evaluate``, :mod:`deltamtl.model.training.evaluate_checkpoint`)
prints, per task, each metric of the model and of the trivial predictor (majority class,
mean depth, constant mean normal, all-edge), the acceptance ratio of the task's primary
metric, and writes the same as JSON (default: ``<ckpt folder>/eval_<split>.json``).

Function API for other code::

    evaluate_model(model, dataset, tasks) -> {task: {metric: value}}
    baseline_stats(train_dataset, tasks)  -> constants of the trivial predictors
    evaluate_baselines(stats, dataset, tasks) -> {task: {metric: value}}

Predictions are converted to the metric module's conventions (numpy, channel-last):
semseg argmax labels, depth in mm (the model predicts metres), unit normals, edge
probabilities (sigmoid of the logits).  The all-edge baseline is scored without
thinning (its F is then about 2P/(1+P), P the edge-pixel fraction); the model's edges use
the metric's standard thinning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from deltamtl.model.training.losses import MM_PER_M
from torch import nn
from torch.utils.data import DataLoader, Dataset

#: Acceptance of a trained tiny model against the trivial predictor, on its primary
#: metric: (ratio bound, "ge" = model >= bound * baseline, "le" = model <= bound * baseline,
#: "gt" = model > bound * baseline).
ACCEPTANCE: dict[str, tuple[float, str]] = {
    "semseg": (3.0, "ge"),
    "depth": (0.5, "le"),
    "normals": (0.6, "le"),
    "edges": (1.0, "gt"),
}
BASELINE_NAMES = {"semseg": "majority class", "depth": "mean depth", "normals": "constant mean normal",
                  "edges": "all-edge"}


def predictions_to_numpy(task: str, output: torch.Tensor) -> np.ndarray:
    """Head output [B,C,H,W] -> the metric input for ``task``."""
    out = output.detach().float().cpu()
    if task == "semseg":
        return out.argmax(dim=1).numpy().astype(np.int64)
    if task == "depth":
        return (out[:, 0] * MM_PER_M).numpy()
    if task == "normals":
        return F.normalize(out, dim=1, eps=1e-6).permute(0, 2, 3, 1).numpy()
    if task == "edges":
        return torch.sigmoid(out[:, 0]).numpy()
    raise ValueError(f"unknown task {task!r}")


def targets_to_numpy(task: str, target: torch.Tensor) -> np.ndarray:
    """Data-set target tensor of ``task`` -> the metric's ground-truth array."""
    t = target.detach().cpu()
    if task == "semseg":
        return t.numpy().astype(np.int64)
    if task == "depth":
        return t[:, 0].float().numpy()
    if task == "normals":
        return t.permute(0, 2, 3, 1).float().numpy()
    if task == "edges":
        return (t[:, 0] > 0.5).numpy().astype(np.uint8)
    raise ValueError(f"unknown task {task!r}")


def _meter(task: str, num_classes: int, **kwargs: Any):
    from deltamtl.model.data.synthetic import CLASS_NAMES
    from deltamtl.model.training.metrics import make_meter

    if task == "semseg":
        names = CLASS_NAMES if len(CLASS_NAMES) == num_classes else None
        return make_meter(task, num_classes=num_classes, class_names=names)
    return make_meter(task, **kwargs)


def _num_classes() -> int:
    from deltamtl.model.data.synthetic import NUM_CLASSES

    return int(NUM_CLASSES)


def _loader(dataset: Dataset, batch_size: int) -> DataLoader:
    # own generator: evaluation inside a training run must not advance the global RNG
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0,
                      generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, tasks: Sequence[str], batch_size: int = 32,
                   device: torch.device | str | None = None, num_classes: int | None = None) -> dict[str, dict[str, float]]:
    """Run ``model(images, task)`` over ``dataset`` and return every metric per task."""
    if device is None:
        device = next(model.parameters()).device
    n_cls = num_classes if num_classes is not None else getattr(model, "num_classes", None) or _num_classes()
    meters = {t: _meter(t, n_cls) for t in tasks}
    was_training = model.training
    model.eval()
    try:
        for batch in _loader(dataset, batch_size):
            images = batch["image"].to(device)
            outputs = model(images, tuple(tasks) if len(tasks) > 1 else tasks[0])
            for t in tasks:
                meters[t].update(predictions_to_numpy(t, outputs[t]), targets_to_numpy(t, batch[t]))
    finally:
        model.train(was_training)
    return {t: {k: float(v) for k, v in meters[t].compute().items()} for t in tasks}


def baseline_stats(train_dataset: Dataset, tasks: Iterable[str], ignore_index: int | None = None,
                   batch_size: int = 64) -> dict[str, Any]:
    """Constants of the trivial predictors, estimated on the training split."""
    if ignore_index is None:
        from deltamtl.model.data.synthetic import IGNORE_INDEX

        ignore_index = int(IGNORE_INDEX)
    tasks = tuple(tasks)
    counts = np.zeros(256, dtype=np.int64)
    depth_sum, depth_n = 0.0, 0
    normal_sum = np.zeros(3, dtype=np.float64)
    for batch in _loader(train_dataset, batch_size):
        if "semseg" in tasks:
            lab = batch["semseg"].numpy().ravel()
            counts += np.bincount(lab[lab != ignore_index], minlength=256)[:256]
        if "depth" in tasks:
            d = batch["depth"].numpy().ravel()
            ok = np.isfinite(d) & (d > 0)
            depth_sum += float(d[ok].sum(dtype=np.float64))
            depth_n += int(ok.sum())
        if "normals" in tasks:
            n = batch["normals"].permute(0, 2, 3, 1).reshape(-1, 3).numpy()
            ok = np.linalg.norm(n, axis=1) > 0.5
            normal_sum += n[ok].sum(axis=0, dtype=np.float64)
    stats: dict[str, Any] = {}
    if "semseg" in tasks:
        stats["semseg"] = int(counts.argmax())
    if "depth" in tasks:
        stats["depth"] = depth_sum / max(depth_n, 1)
    if "normals" in tasks:
        stats["normals"] = (normal_sum / max(np.linalg.norm(normal_sum), 1e-12)).tolist()
    if "edges" in tasks:
        stats["edges"] = 1.0
    return stats


def evaluate_baselines(stats: dict[str, Any], dataset: Dataset, tasks: Sequence[str],
                       batch_size: int = 64, num_classes: int | None = None) -> dict[str, dict[str, float]]:
    """Metrics of the constant predictors in ``stats`` on ``dataset``."""
    n_cls = num_classes or _num_classes()
    # The all-edge map is scored without thinning: thinning a constant map leaves almost no
    # pixels and would give the baseline odsF ~0, a meaningless bar.
    meters = {t: _meter(t, n_cls, **({"thin": False} if t == "edges" else {})) for t in tasks}
    for batch in _loader(dataset, batch_size):
        b, _, h, w = batch["image"].shape
        for t in tasks:
            if t == "semseg":
                pred = np.full((b, h, w), stats["semseg"], dtype=np.int64)
            elif t == "depth":
                pred = np.full((b, h, w), stats["depth"], dtype=np.float32)
            elif t == "normals":
                pred = np.broadcast_to(np.asarray(stats["normals"], np.float32), (b, h, w, 3)).copy()
            else:
                pred = np.full((b, h, w), stats["edges"], dtype=np.float32)
            meters[t].update(pred, targets_to_numpy(t, batch[t]))
    return {t: {k: float(v) for k, v in meters[t].compute().items()} for t in tasks}


def acceptance(model_metrics: dict[str, dict[str, float]], baseline_metrics: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Per task: primary metric, model/baseline ratio, the required bound and pass/fail."""
    from deltamtl.model.training.metrics import PRIMARY_METRIC

    result = {}
    for task, metrics in model_metrics.items():
        key = _primary_key(PRIMARY_METRIC[task])
        model_v, base_v = metrics[key], baseline_metrics[task][key]
        bound, rel = ACCEPTANCE[task]
        ratio = model_v / base_v if base_v else float("inf")
        ok = {"ge": ratio >= bound, "le": ratio <= bound, "gt": ratio > bound}[rel]
        result[task] = {"metric": key, "model": model_v, "baseline": base_v, "ratio": ratio,
                        "required": f"{'>=' if rel == 'ge' else '<=' if rel == 'le' else '>'} {bound}",
                        "pass": bool(ok)}
    return result


def _primary_key(entry: Any) -> str:
    """PRIMARY_METRIC values may be a metric name or (name, direction)."""
    return entry if isinstance(entry, str) else entry[0]


def format_report(model_metrics: dict, baseline_metrics: dict, accept: dict) -> str:
    lines = []
    for task, metrics in model_metrics.items():
        lines.append(f"== {task} (baseline: {BASELINE_NAMES.get(task, 'trivial')})")
        lines.append(f"   {'metric':<16}{'model':>12}{'baseline':>12}")
        for k, v in metrics.items():
            lines.append(f"   {k:<16}{v:>12.4f}{baseline_metrics[task].get(k, float('nan')):>12.4f}")
        a = accept[task]
        lines.append(f"   primary {a['metric']}: ratio {a['ratio']:.3f} (required {a['required']}) "
                     f"-> {'PASS' if a['pass'] else 'FAIL'}")
    return "\n".join(lines)







