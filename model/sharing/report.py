"""Computation-sharing report: the paper's Tables 2/4 and figures 3/5/6 for this model.

One command::

    deltamtl sharing-report --config configs/tiny.yaml [--out runs/sharing]
        [--split test] [--sweep runs/sharing/sweep.json]
    deltamtl sharing-report --config configs/tiny.yaml --sweep-only
        [--sweep-task depth] [--sweep-steps-scale 0.3]     # fig 5: retrains one sub-task

reads the single-task checkpoints (``sharing.st_checkpoint``; the base is
``sharing.base_checkpoint``) and the sub-task checkpoints of steps 2 and 3
(``{sharing.out_root}/{task}/step{2,3}/last.pt``) and writes, under ``--out``:

* ``report.json``  every number below, thresholds, boundaries, densities, acceptance;
* ``report.md``    the table (rows ST, +weight sharing, +task activation sharing,
                   +task+temporal activation sharing; columns every task's primary metric,
                   parameters, storage, total MACs, base MACs, MACs per sub-task), the
                   acceptance checks and where the MACs go;
* ``fig_density.png`` per-layer S_w, S_a1, S_a2 and the chosen boundary (figs 3 and 6);
* ``fig_macs.png``    MAC breakdown per row;
* ``fig_sweep.png``   lambda_w / lambda_a sweep (fig 5), when sweep runs exist.

Protocol: every frame of the evaluation clips is labelled; videos are run with the
keyframe at offsets 0..K-1 before each scored frame and the metrics of each offset are
averaged (the paper's Table 4 protocol). ST and weight sharing run densely on the same
frames. Thresholds are calibrated on the validation split: one relative level per task
from ``sharing.threshold_grid``, the largest up to which every level's primary metric under
task+temporal reuse stays within ``sharing.threshold_margin`` (relative) of the same model
run densely;
boundaries come from densities measured on validation clips at those thresholds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from deltamtl.contract.atomic import atomic_write_text, atomic_write_with
from deltamtl.model.checkpoint import load_checkpoint, load_model_state
from deltamtl.model.sharing.accounting import (
    attention_core_macs,
    dense_footprint,
    dense_model_macs,
    head_macs,
    subtask_footprint,
)
from deltamtl.model.sharing.delta import GateConfig, delta_modules
from deltamtl.model.sharing.density import calibrate_thresholds, measure_densities
from deltamtl.model.sharing.reuse import Policy, clip_frames, evaluate_video
from deltamtl.model.sharing.subtasks import load_subtask
from deltamtl.model.sharing.train_steps import sharing_value
from deltamtl.model.tasks import BASE_TASK, EMBED, SUB_TASKS
from deltamtl.model.training.vit import MultiTaskViT

REPORT_DEFAULTS: dict[str, Any] = {
    "threshold_grid": [0.1, 0.2, 0.3, 0.5],
    "threshold_margin": 0.015,  # val metric cost of thresholds allowed, relative to dense
    "keyframe_interval": 5,
    "report_val_clips": None,    # val clips for threshold selection; None: data.val_clips
    "report_test_clips": None,   # clips of the table's split; None: data.<split>_clips
}
ACCEPT_MACS_SAVING = 0.55
ACCEPT_PARAM_SAVING = 0.60
ACCEPT_METRIC_GAP = 0.05
HIGHER_IS_BETTER = {"semseg": True, "depth": False, "normals": False, "edges": True}
ROWS = ("ST", "+weight sharing", "+task act sharing", "+task+temporal act sharing")


def report_value(cfg: dict, key: str) -> Any:
    return (cfg.get("sharing") or {}).get(key, REPORT_DEFAULTS[key])


def report_split_config(cfg: dict) -> dict:
    """``cfg`` with ``sharing.report_val_clips`` / ``report_test_clips`` (when set) as the clip
    counts of the val and test splits: the 8-clip training-time splits are far too noisy to
    compare a sub-task with its ST model (per-clip differences spread over +-50 %)."""
    data = dict(cfg["data"])
    for key, field in (("report_val_clips", "val_clips"), ("report_test_clips", "test_clips")):
        n = report_value(cfg, key)
        if n is None:
            continue
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"sharing.{key} must be a positive integer or null, got {n!r}")
        data[field] = n
    return cfg if data == cfg["data"] else {**cfg, "data": data}


def primary_metric(task: str) -> tuple[str, bool]:
    """(metric name, higher is better) of a task, from the metrics module."""
    from deltamtl.model.training.metrics import PRIMARY_METRIC

    entry = PRIMARY_METRIC[task]
    if isinstance(entry, str):
        return entry, HIGHER_IS_BETTER[task]
    name, direction = entry[0], entry[1]
    higher = direction in ("max", "higher", "up", True, 1, "ge") if not isinstance(direction, bool) \
        else direction
    return name, bool(higher)


def relative_gap(task: str, value: float, reference: float) -> float:
    """Relative degradation of ``value`` against ``reference`` (> 0: worse)."""
    _, higher = primary_metric(task)
    if reference == 0:
        return 0.0 if value == reference else float("inf")
    return (reference - value) / abs(reference) if higher else (value - reference) / abs(reference)


def configured_boundaries(cfg: dict, depth: int) -> dict[str, int] | None:
    """``sharing.boundary``: 'auto' (None: measured) or per-sub-task ints (list or mapping)."""
    value = (cfg.get("sharing") or {}).get("boundary", "auto")
    if value == "auto":
        return None
    if isinstance(value, list) and len(value) == len(SUB_TASKS):
        value = dict(zip(SUB_TASKS, value, strict=True))
    if not isinstance(value, dict) or set(value) != set(SUB_TASKS) or not all(
            isinstance(v, int) and -1 <= v < depth for v in value.values()):
        raise ValueError(f"sharing.boundary must be 'auto' or one block index in [-1, {depth - 1}] "
                         f"per sub-task {SUB_TASKS}, got {value!r}")
    return dict(value)


# -- loading ----------------------------------------------------------------------------------
def _load_plain(path: Path, device: torch.device) -> MultiTaskViT:
    ckpt = load_checkpoint(path, map_location=device)
    model = MultiTaskViT(ckpt["config"], tuple(ckpt["tasks"])).to(device)
    load_model_state(model, ckpt["model"], path)
    return model.eval()


def load_st_models(cfg: dict, device: torch.device) -> dict[str, MultiTaskViT]:
    out = {}
    for task in (BASE_TASK, *SUB_TASKS):
        path = Path(str(sharing_value(cfg, "st_checkpoint")).format(task=task))
        if task == BASE_TASK:
            path = Path(sharing_value(cfg, "base_checkpoint"))
        out[task] = _load_plain(path, device)
    return out


def load_subtasks(cfg: dict, base: MultiTaskViT, step: int, root: Path | None = None
                  ) -> dict[str, MultiTaskViT]:
    root = Path(sharing_value(cfg, "out_root")) if root is None else root
    gate_cfg = GateConfig.from_sharing(cfg.get("sharing"))
    subs = {}
    for task in SUB_TASKS:
        path = root / task / f"step{step}" / "last.pt"
        ckpt = load_checkpoint(path, map_location=base.pixel_mean.device)
        if ckpt["recipe"] != f"step{step}":
            raise ValueError(f"{path}: written by recipe {ckpt['recipe']!r}, expected step{step}")
        subs[task] = load_subtask(base, task, cfg, gate_cfg, ckpt["model"]).eval()
    return subs


# -- dense evaluation on the same frames and protocol ----------------------------------------
@torch.no_grad()
def evaluate_dense_video(models: Mapping[str, MultiTaskViT], clips: Sequence, k: int) -> dict:
    """Each task's own dense model on every frame, scored per keyframe distance like
    :func:`evaluate_video` (distances are irrelevant to a dense model but the averaging is
    the same, so the numbers are comparable)."""
    from deltamtl.model.training.evaluate import _meter, predictions_to_numpy, targets_to_numpy

    frames, targets = clip_frames(clips)
    any_model = next(iter(models.values()))
    frames = frames.to(any_model.pixel_mean.device, any_model.pixel_mean.dtype)
    outs = [{t: m(f, task=t)[t] for t, m in models.items()} for f in frames]
    meters = {d: {t: _meter(t, any_model.num_classes) for t in models} for d in range(k)}
    for o in range(k):
        for i in range(o, len(frames)):
            for t in models:
                meters[(i - o) % k][t].update(predictions_to_numpy(t, outs[i][t]),
                                              targets_to_numpy(t, targets[i][t]))
    per = {d: {t: {n: float(v) for n, v in meters[d][t].compute().items()} for t in models}
           for d in range(k)}
    return {t: {n: sum(per[d][t][n] for d in per) / len(per) for n in per[0][t]} for t in models}


# -- threshold calibration --------------------------------------------------------------------
def select_thresholds(base: MultiTaskViT, subs: Mapping[str, MultiTaskViT], val_clips: Sequence,
                      st_val: Mapping[str, Mapping[str, float]], grid: Sequence[float],
                      margin: float, k: int, log=print) -> tuple[dict[str, float], list[dict]]:
    """Per task, the largest relative threshold up to which every level's val metric under
    task+temporal reuse stays within ``margin`` (relative) of the same model run densely.

    The comparison is paired (one model, with and without thresholds, on the same frames), so
    it measures what the threshold costs; comparing with the ST model instead mixes in the
    model-to-model difference, which varies from clip to clip far more than that cost. Gaps
    to ST are logged in every trial as well."""
    depth = len(base.encoder.blocks)
    dense = evaluate_video(base, subs, Policy(depth=depth, task_reuse=False, temporal=False),
                           val_clips, key_offsets=[0], sparse_exec=False)["metrics"]
    trials = []
    for rel in grid:
        rels = dict.fromkeys([BASE_TASK, *subs], rel)
        ths = calibrate_thresholds(base, subs, val_clips, rels)
        dens, _ = measure_densities(base, subs, val_clips, ths, k, sparse_exec=False)
        policy = Policy(depth=depth, keyframe_interval=k, thresholds=ths,
                        boundaries={t: d.boundary for t, d in dens.items()})
        res = evaluate_video(base, subs, policy, val_clips, sparse_exec=False)
        cost, gaps = {}, {}
        for t in res["metrics"]:
            name, _ = primary_metric(t)
            cost[t] = relative_gap(t, res["metrics"][t][name], dense[t][name])
            gaps[t] = relative_gap(t, res["metrics"][t][name], st_val[t][name])
        trial = {"rel": rel, "threshold_cost": cost, "gaps": gaps,
                 "macs_per_image": res["macs_per_image"],
                 "boundaries": {t: d.boundary for t, d in dens.items()}}
        trials.append(trial)
        log(f"[thresholds] rel={rel}: cost vs dense {json.dumps({t: round(g, 4) for t, g in cost.items()})}"
            f" gap vs ST {json.dumps({t: round(g, 4) for t, g in gaps.items()})}"
            f" MACs {res['total_macs_per_image'] / 1e6:.2f}M")
    # Walk up the grid and stop at the first level that costs too much: the measured cost is
    # noisy enough that a larger level can pass where a smaller one failed.
    chosen = {}
    for t in [BASE_TASK, *subs]:
        chosen[t] = min(grid)
        for tr in sorted(trials, key=lambda tr: tr["rel"]):
            if tr["threshold_cost"][t] > margin:
                break
            chosen[t] = tr["rel"]
    return chosen, trials


# -- MAC breakdown -----------------------------------------------------------------------------
def _macs_breakdown(result: dict, base: MultiTaskViT, subs: Mapping[str, MultiTaskViT]) -> dict:
    """Per task: executed block-site MACs, patch embedding, attention core + head (per image)."""
    ledger, images = result["ledger"], result["images"]
    out: dict[str, dict[str, float]] = {}
    for (t, b, s, _mode), v in ledger.macs.items():
        part = EMBED if s == EMBED else ("attention+head" if b < -1 else "sites")
        out.setdefault(t, {}).setdefault(part, 0.0)
        out[t][part] += v / images
    return out


def _row(name: str, metrics: dict, params: int, storage_mbit: float, macs: Mapping[str, float]
         ) -> dict:
    return {"row": name, "metrics": metrics, "params": params, "storage_mbit": storage_mbit,
            "total_macs": float(sum(macs.values())), "base_macs": float(macs[BASE_TASK]),
            "sub_macs": {t: float(macs[t]) for t in SUB_TASKS if t in macs}}


def markdown(report: dict) -> str:
    tasks = [BASE_TASK, *SUB_TASKS]
    names = {t: primary_metric(t) for t in tasks}
    head = ["Method"] + [f"{t} {names[t][0]} {'↑' if names[t][1] else '↓'}" for t in tasks] + [
        "Params (M)", "Storage (Mbit)", "Total MMACs", "Base MMACs"] + [
        f"{t} MMACs" for t in SUB_TASKS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        cells = [r["row"]] + [f"{r['metrics'][t][names[t][0]]:.4g}" for t in tasks] + [
            f"{r['params'] / 1e6:.3f}", f"{r['storage_mbit']:.2f}", f"{r['total_macs'] / 1e6:.2f}",
            f"{r['base_macs'] / 1e6:.2f}"] + [f"{r['sub_macs'][t] / 1e6:.2f}" for t in SUB_TASKS]
        lines.append("| " + " | ".join(cells) + " |")
    acc = report["acceptance"]
    lines += ["", "## Acceptance (+task+temporal act sharing vs the 4 ST models)", "",
              f"* MACs saved: {acc['macs_saving']:.1%} (required >= {ACCEPT_MACS_SAVING:.0%}) "
              f"-> {'PASS' if acc['macs_pass'] else 'FAIL'}",
              f"* stored parameters saved: {acc['param_saving']:.1%} (required >= "
              f"{ACCEPT_PARAM_SAVING:.0%}) -> {'PASS' if acc['param_pass'] else 'FAIL'}",
              f"* storage saved: {acc['storage_saving']:.1%}"]
    for t, g in acc["metric_gaps"].items():
        lines.append(f"* {t} {names[t][0]}: {g:+.2%} relative to ST (required <= "
                     f"{ACCEPT_METRIC_GAP:.0%} worse) -> {'PASS' if g <= ACCEPT_METRIC_GAP else 'FAIL'}")
    lines += ["", f"* linear-site MACs (patch embedding + block sites) saved: "
              f"{acc['linear_site_macs_saving']:.1%}; the dense attention core and heads, which "
              f"no sharing reduces, are {acc['attention_head_share_of_st']:.1%} of the ST total"]
    lines += ["", "## Where the MACs go (per image, +task+temporal act sharing)", "",
              "| task | block sites | patch embed | attention core + head |", "|---|---|---|---|"]
    for t, parts in report["macs_breakdown"].items():
        lines.append(f"| {t} | {parts.get('sites', 0) / 1e6:.2f}M | "
                     f"{parts.get('patch_embed', 0) / 1e6:.2f}M | {parts.get('attention+head', 0) / 1e6:.2f}M |")
    lines += ["", "## Thresholds and boundaries", "",
              f"relative thresholds: {json.dumps(report['threshold_rel'])}",
              f"boundaries l_k (0-based block; task reuse for blocks <= l_k, -1: temporal everywhere): {json.dumps(report['boundaries'])}",
              f"keyframe interval K = {report['keyframe_interval']}", ""]
    return "\n".join(lines)


# -- figures -----------------------------------------------------------------------------------
def plot_densities(densities: Mapping[str, dict], base_s_a2: Sequence[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(densities), figsize=(4.2 * len(densities), 3.4), squeeze=False)
    for ax, (task, d) in zip(axes[0], densities.items(), strict=True):
        # 0-based blocks, the numbering of the boundary l_k in the report and the config
        blocks = list(range(len(d["s_w"])))
        task_cost = [a + w for a, w in zip(d["s_a1"], d["s_w"], strict=True)]
        ax.plot(blocks, d["s_w"], "o-", label="S_w (delta weight)")
        ax.plot(blocks, d["s_a1"], "s-", label="S_a1 (task delta act.)")
        ax.plot(blocks, d["s_a2"], "^-", label="S_a2 (temporal delta act.)")
        ax.plot(blocks, task_cost, ":", color="grey", label="S_w + S_a1 (TASK-mode cost)")
        ax.axvline(d["boundary"] + 0.5, color="k", ls="--", lw=1,
                   label=f"boundary l_k={d['boundary']} (TASK <= l_k < TEMPORAL)")
        ax.set_title(task)
        ax.set_xlabel("block (0-based)")
        ax.set_ylabel("density (non-zero fraction)")
        # S_w + S_a1 is a cost, not a fraction: it may pass 1
        ax.set_ylim(0, max(1.02, 1.05 * max(task_cost, default=0.0)))
        ax.set_xticks(blocks)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Per-layer densities (base S_a2: {', '.join(f'{v:.2f}' for v in base_s_a2)})",
                 fontsize=9)
    fig.tight_layout()
    _save_fig(fig, path)


def plot_macs(rows: Sequence[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [r["row"] for r in rows]
    bottom = [0.0] * len(rows)
    for t in (BASE_TASK, *SUB_TASKS):
        vals = [(r["base_macs"] if t == BASE_TASK else r["sub_macs"][t]) / 1e6 for r in rows]
        ax.bar(names, vals, bottom=bottom, label=t)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel("MMACs per image")
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    _save_fig(fig, path)


def plot_sweep(points: Sequence[dict], path: Path) -> None:
    """One panel per (swept coefficient, task): its cost (S_w or MACs) and the task metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(p["vary"], p["task"]) for p in points})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (vary, task) in zip(axes[0], panels, strict=True):
        pts = sorted((p for p in points if (p["vary"], p["task"]) == (vary, task)),
                     key=lambda p: p[vary])
        yfield, ylabel = (("weight_density", "delta weight density S_w") if vary == "lambda_w"
                          else ("sub_mmacs", "sub-task MMACs per image"))
        xs = [p[vary] for p in pts]
        ax.plot(xs, [p[yfield] for p in pts], "o-", color="tab:blue")
        ax.set_xscale("log")
        # lambda_a sweeps scale lambda_a1 and lambda_a2 by the same factor; x is lambda_a1.
        ax.set_xlabel("lambda_w" if vary == "lambda_w" else "lambda_a1 (lambda_a2 scaled alike)")
        ax.set_ylabel(ylabel, color="tab:blue")
        ax.set_title(task)
        ax2 = ax.twinx()
        ax2.plot(xs, [p["metric"] for p in pts], "s--", color="tab:red")
        ax2.set_ylabel(f"{task} {pts[0]['metric_name']}", color="tab:red")
    fig.tight_layout()
    _save_fig(fig, path)


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:  # suffix .png: savefig picks the format from it
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=120), suffix=".png")
    finally:
        plt.close(fig)


# -- the report --------------------------------------------------------------------------------
def build_report(cfg: dict, split: str = "test", device: str = "cpu", log=print) -> dict:
    from deltamtl.model.training.recipe import synthetic_split

    dev = torch.device(device)
    k = int(report_value(cfg, "keyframe_interval"))
    grid = [float(x) for x in report_value(cfg, "threshold_grid")]
    margin = float(report_value(cfg, "threshold_margin"))
    st = load_st_models(cfg, dev)
    base = st[BASE_TASK]
    subs2 = load_subtasks(cfg, base, 2)
    subs3 = load_subtasks(cfg, base, 3)
    split_cfg = report_split_config(cfg)
    val_clips = synthetic_split(split_cfg, "val").clips
    eval_clips = synthetic_split(split_cfg, split).clips
    depth = len(base.encoder.blocks)

    log("[report] ST models on val (threshold selection reference)")
    st_val = evaluate_dense_video(st, val_clips, k)
    rels, trials = select_thresholds(base, subs3, val_clips, st_val, grid, margin, k, log)
    ths = calibrate_thresholds(base, subs3, val_clips, rels)
    dens, base_s_a2 = measure_densities(base, subs3, val_clips, ths, k, sparse_exec=False)
    boundaries = configured_boundaries(cfg, depth) or {t: d.boundary for t, d in dens.items()}
    log(f"[report] relative thresholds {rels}, boundaries {boundaries}")

    # Row 1: four independent single-task models, dense.
    st_metrics = evaluate_dense_video(st, eval_clips, k)
    st_macs = {t: float(dense_model_macs(m, t).total) for t, m in st.items()}
    st_fp = [dense_footprint(m) for m in st.values()]
    rows = [_row(ROWS[0], st_metrics, sum(f.params for f in st_fp),
                 sum(f.storage_mbit for f in st_fp), st_macs)]
    shared_fp = {step: [dense_footprint(base)] + [subtask_footprint(m) for m in subs.values()]
                 for step, subs in ((2, subs2), (3, subs3))}

    # Row 2: weight sharing only (step-2 deltas), every site dense.
    dense_policy = Policy(depth=depth, task_reuse=False, temporal=False)
    r2 = evaluate_video(base, subs2, dense_policy, eval_clips, key_offsets=[0], sparse_exec=False)
    rows.append(_row(ROWS[1], r2["metrics"], sum(f.params for f in shared_fp[2]),
                     sum(f.storage_mbit for f in shared_fp[2]), r2["macs_per_image"]))
    # Row 3: task activation sharing (every frame is a keyframe for the base).
    task_policy = Policy(depth=depth, task_reuse=True, temporal=False, thresholds=ths)
    r3 = evaluate_video(base, subs3, task_policy, eval_clips, key_offsets=[0], sparse_exec=False)
    rows.append(_row(ROWS[2], r3["metrics"], sum(f.params for f in shared_fp[3]),
                     sum(f.storage_mbit for f in shared_fp[3]), r3["macs_per_image"]))
    # Row 4: task + temporal activation sharing, keyframe every K, offsets 0..K-1.
    tt_policy = Policy(depth=depth, keyframe_interval=k, task_reuse=True, temporal=True,
                       thresholds=ths, boundaries=boundaries)
    r4 = evaluate_video(base, subs3, tt_policy, eval_clips, sparse_exec=False)
    rows.append(_row(ROWS[3], r4["metrics"], sum(f.params for f in shared_fp[3]),
                     sum(f.storage_mbit for f in shared_fp[3]), r4["macs_per_image"]))

    st_row, final = rows[0], rows[3]
    gaps = {}
    for t in (BASE_TASK, *SUB_TASKS):
        name, _ = primary_metric(t)
        gaps[t] = relative_gap(t, final["metrics"][t][name], st_row["metrics"][t][name])
    macs_saving = 1 - final["total_macs"] / st_row["total_macs"]
    param_saving = 1 - final["params"] / st_row["params"]
    acceptance = {
        "macs_saving": macs_saving, "macs_pass": macs_saving >= ACCEPT_MACS_SAVING,
        "param_saving": param_saving, "param_pass": param_saving >= ACCEPT_PARAM_SAVING,
        "storage_saving": 1 - final["storage_mbit"] / st_row["storage_mbit"],
        "metric_gaps": gaps,
        "metrics_pass": all(gaps[t] <= ACCEPT_METRIC_GAP for t in SUB_TASKS),
    }
    breakdown = _macs_breakdown(r4, base, subs3)
    st_linear = sum(dense_model_macs(m, t).patch_embed + dense_model_macs(m, t).blocks_linear
                    for t, m in st.items())
    shared_linear = sum(p.get("sites", 0.0) + p.get(EMBED, 0.0) for p in breakdown.values())
    fixed = sum(p.get("attention+head", 0.0) for p in breakdown.values())
    acceptance["linear_site_macs_saving"] = 1 - shared_linear / st_linear
    acceptance["attention_head_share_of_st"] = fixed / st_row["total_macs"]
    return {
        "config_name": cfg.get("name"), "split": split, "keyframe_interval": k, "rows": rows,
        "clips": {"val": len(val_clips), split: len(eval_clips)},
        "acceptance": acceptance, "threshold_rel": rels, "thresholds": ths,
        "boundaries": boundaries, "threshold_trials": trials,
        "densities": {t: d.as_dict() for t, d in dens.items()}, "base_s_a2": base_s_a2[BASE_TASK],
        "macs_breakdown": breakdown,
        "dense_extras_per_image": {t: attention_core_macs(m) + head_macs(m, t)
                                   for t, m in [(BASE_TASK, base), *subs3.items()]},
        "per_offset": r4["per_offset"],
    }


def write_report(report: dict, out: Path, sweep: Sequence[dict] | None = None) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1, default=float))
    atomic_write_text(out / "report.md", "# Computation sharing: " + str(report["config_name"])
                      + f" ({report['split']} split, {report['clips'][report['split']]} clips;"
                      f" thresholds from {report['clips']['val']} val clips)\n\n" + markdown(report))
    plot_densities(report["densities"], report["base_s_a2"], out / "fig_density.png")
    plot_macs(report["rows"], out / "fig_macs.png")
    written = [out / "report.json", out / "report.md", out / "fig_density.png", out / "fig_macs.png"]
    if sweep:
        plot_sweep(sweep, out / "fig_sweep.png")
        atomic_write_text(out / "sweep.json", json.dumps(list(sweep), indent=1))
        written += [out / "fig_sweep.png", out / "sweep.json"]
    return written


SWEEP_FACTORS = (0.1, 1.0, 10.0)


def score_sweep_point(cfg: dict, base: MultiTaskViT, task: str, root: Path,
                      rels: Mapping[str, float], val_clips: Sequence, k: int) -> dict:
    """Weight density, stored parameters, sub-task MACs and metric of one trained sub-task."""
    gate_cfg = GateConfig.from_sharing(cfg.get("sharing"))
    ckpt = load_checkpoint(root / task / "step3" / "last.pt")
    sub = load_subtask(base, task, cfg, gate_cfg, ckpt["model"]).eval()
    ths = calibrate_thresholds(base, {task: sub}, val_clips, rels)
    dens, _ = measure_densities(base, {task: sub}, val_clips, ths, k, sparse_exec=False)
    policy = Policy(depth=len(base.encoder.blocks), keyframe_interval=k, thresholds=ths,
                    boundaries={task: dens[task].boundary})
    res = evaluate_video(base, {task: sub}, policy, val_clips, key_offsets=[0], sparse_exec=False)
    fp = subtask_footprint(sub)
    nnz = sum(m.nnz() for _, m in delta_modules(sub))
    numel = sum(m.numel() for _, m in delta_modules(sub))
    name, _ = primary_metric(task)
    return {"task": task, "metric_name": name, "metric": res["metrics"][task][name],
            "weight_density": nnz / numel, "params": fp.params,
            "sub_mmacs": res["macs_per_image"][task] / 1e6}


def sweep_from_runs(cfg: dict, spec: Sequence[Mapping[str, Any]], rels: Mapping[str, float],
                    n_clips: int | None = None, log=print) -> list[dict]:
    """Fig. 5 from finished runs: each spec entry names ``vary`` (lambda_w or lambda_a),
    ``task``, ``lambda_w``, ``lambda_a`` and ``root`` (an out_root holding task/step3)."""
    from deltamtl.model.training.recipe import synthetic_split

    base = _load_plain(Path(sharing_value(cfg, "base_checkpoint")), torch.device("cpu"))
    val_clips = synthetic_split(cfg, "val").clips[:n_clips]
    k = int(report_value(cfg, "keyframe_interval"))
    points = []
    for entry in spec:
        missing = {"vary", "task", "lambda_w", "lambda_a", "root"} - set(entry)
        if missing or entry["vary"] not in ("lambda_w", "lambda_a"):
            raise ValueError(f"sweep spec entry {dict(entry)!r}: needs vary in (lambda_w, "
                             f"lambda_a) and keys {sorted(missing)}")
        point = {**entry, **score_sweep_point(cfg, base, entry["task"], Path(entry["root"]),
                                               rels, val_clips, k)}
        log(f"[sweep] {point}")
        points.append(point)
    return points


def run_sweep(cfg: dict, task: str, steps_scale: float, root: Path, rels: Mapping[str, float],
              log=print, n_clips: int | None = None) -> list[dict]:
    """Fig. 5: retrain ``task`` (steps 1-3, reduced budget) with lambda_w, then lambda_a1 and
    lambda_a2 together, scaled by SWEEP_FACTORS, then score every run (:func:`sweep_from_runs`)."""
    from deltamtl.model.config import apply_overrides
    from deltamtl.model.sharing.train_steps import run_all

    lw, la1, la2 = (float(sharing_value(cfg, n)) for n in ("lambda_w", "lambda_a1", "lambda_a2"))
    spec = []
    for vary in ("lambda_w", "lambda_a"):
        for f in SWEEP_FACTORS:
            sub_root = root / f"{vary}_x{f:g}" if not (vary == "lambda_a" and f == 1.0) \
                else root / "lambda_w_x1"
            w = lw * (f if vary == "lambda_w" else 1.0)
            a1, a2 = (x * (f if vary == "lambda_a" else 1.0) for x in (la1, la2))
            if not (sub_root / task / "step3" / "last.pt").is_file():
                log(f"[sweep] training {task} with lambda_w={w:g} lambda_a={a1:g}")
                run_all(apply_overrides(cfg, [f"sharing.out_root={sub_root}", f"sharing.lambda_w={w}",
                                              f"sharing.lambda_a1={a1}", f"sharing.lambda_a2={a2}"]),
                        [task], steps_scale)
            spec.append({"vary": vary, "task": task, "lambda_w": w, "lambda_a": a1,
                         "lambda_a2": a2, "root": str(sub_root)})
    return sweep_from_runs(cfg, spec, rels, n_clips, log)


def main(argv: Sequence[str] | None = None) -> int:
    from deltamtl.model.config import load_config

    p = argparse.ArgumentParser(prog="deltamtl sharing-report",
                                description="Tables and figures of computation sharing.")
    p.add_argument("--config", required=True)
    p.add_argument("--out", default=None, help="output folder (default: sharing.out_root)")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--sweep", default=None,
                   help="sweep.json written by an earlier --sweep-only run (plotted as fig 5)")
    p.add_argument("--sweep-only", action="store_true",
                   help="train and score the lambda_w / lambda_a sweep (fig 5) only; writes "
                        "sweep.json and fig_sweep.png under --out")
    p.add_argument("--sweep-task", default="depth")
    p.add_argument("--sweep-spec", default=None,
                   help="with --sweep-only: score finished runs listed in this JSON file "
                        "(see sweep_from_runs) instead of training new ones")
    p.add_argument("--sweep-steps-scale", type=float, default=0.3)
    p.add_argument("--sweep-clips", type=int, default=4,
                   help="validation clips scored per sweep point (keyframe offset 0 only)")
    p.add_argument("--sweep-rel", type=float, default=0.2,
                   help="relative threshold of every task while scoring sweep points")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load_config(a.config, a.overrides, task=a.sweep_task if a.sweep_only else None)
    out = Path(a.out or sharing_value(cfg, "out_root"))
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if a.sweep_only:
        rels = dict.fromkeys((BASE_TASK, *SUB_TASKS), a.sweep_rel)
        if a.sweep_spec:
            spec = json.loads(Path(a.sweep_spec).read_text())
            points = sweep_from_runs(cfg, spec, rels, a.sweep_clips, log)
        else:
            points = run_sweep(cfg, a.sweep_task, a.sweep_steps_scale, out / "sweep", rels,
                               log=log, n_clips=a.sweep_clips)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "sweep.json", json.dumps(points, indent=1))
        plot_sweep(points, out / "fig_sweep.png")
        print(out / "sweep.json")
        print(out / "fig_sweep.png")
        return 0
    report = build_report(cfg, a.split, log=log)
    sweep = json.loads(Path(a.sweep).read_text()) if a.sweep else None
    for path in write_report(report, out, sweep):
        print(path)
    print(json.dumps(report["acceptance"], indent=1))
    return 0

