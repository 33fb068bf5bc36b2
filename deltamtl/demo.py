"""`deltamtl demo` (`make demo`): synthetic video -> train the base task and a short sharing chain for the
three sub-tasks -> quantise and export -> stream a synthetic clip with all four tasks
through the accelerator backend -> report.

The demo is a list of :class:`Step` objects run in order over one :class:`DemoContext`:
render, train_base, evaluate, preview, quantise_export, emulate (:data:`STEPS`). Further
stages are added by appending steps (or passing a longer list to :func:`run_demo`); each
step returns a dict that lands under its name in ``report.json`` and as a section of
``report.md``, and may add files to ``ctx.artifacts``.

Outputs in ``--out`` (default runs/demo): report.md, report.json, clip_gt.png (ground truth
of one rendered clip), preview_<split>.png (ground truth and predictions), the run folder
st_semseg/ (checkpoint, logs), eval_<split>.json, sharing/<task>/step<N>/ (the sub-tasks'
sharing chain), bundle/, and stream/ (the streamed clip: overlays.mp4/gif, grid.png,
statistics, stream_predictions.png with the four predictions next to the ground truth).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from deltamtl.contract.atomic import atomic_write_text, atomic_write_with
from deltamtl.model.checkpoint import json_safe
from deltamtl.model.config import load_config

DEFAULT_CONFIG = "configs/tiny.yaml"
DEFAULT_STEPS = 1000  # tiny semseg ST model: a few minutes on two idle cores
# The demo's sharing chain per sub-task (steps 1, 2, 3): far shorter than the measured
# schedule of docs/sharing.md, so the whole demo fits 15 minutes on two cores; the sub-task
# predictions are therefore rougher than `make sharing-train`'s.
DEFAULT_SHARING_STEPS = (500, 100, 50)  # ~6 minutes for the three sub-tasks
STREAM_FRAMES = 16  # per clip; two test clips concatenated: a scene cut at the join
# Streaming threshold when the bundle carries none (the sharing report chooses them; the
# demo does not run it): th = 1 is lossless but sends the renderer's pixel noise, ~85 % of
# the patch embedding's input per frame on a moving camera; th = 4 sends ~15 %.
DEMO_STREAM_TH = 4
PREVIEW_FRAMES = 4


@dataclass
class DemoContext:
    cfg: dict
    out: Path
    config_path: str
    steps: int
    split: str = "test"
    overrides: list[str] = field(default_factory=list)  # --set style config overrides
    st_runs: Path | None = None  # folder with st_<task>/last.pt of other tasks, for previews
    sharing_steps: tuple[int, int, int] = DEFAULT_SHARING_STEPS
    backend: str | None = None  # streaming backend (None: virtual when registered, else emulated)
    results: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)  # task -> trained model (for previews)


@dataclass
class Step:
    name: str
    description: str
    run: Callable[[DemoContext], dict]


# -- plotting -------------------------------------------------------------------------------


def _palette(n: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N)[:3] for i in range(n)], dtype=np.float32)


def _savefig_atomic(fig, path: Path) -> None:
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"),
                      suffix=".png")


def _panels(frame: dict[str, np.ndarray], palette: np.ndarray, depth_range: tuple[float, float]) -> dict[str, np.ndarray]:
    """Channel-last arrays of one frame -> RGB images in [0,1] for display."""
    import matplotlib

    out = {}
    if "semseg" in frame:
        lab = frame["semseg"].astype(np.int64)
        img = np.zeros(lab.shape + (3,), np.float32)
        ok = lab < len(palette)
        img[ok] = palette[lab[ok]]
        out["semseg"] = img
    if "depth" in frame:
        lo, hi = depth_range
        out["depth"] = matplotlib.colormaps["viridis"](np.clip((frame["depth"] - lo) / max(hi - lo, 1e-6), 0, 1))[..., :3]
    if "normals" in frame:
        out["normals"] = np.clip((frame["normals"] + 1.0) / 2.0, 0, 1)
    if "edges" in frame:
        out["edges"] = np.repeat(np.clip(frame["edges"], 0, 1)[..., None], 3, axis=2)
    return out


def save_grid(path: Path, rgb: np.ndarray, gt: dict[str, np.ndarray], pred: dict[str, np.ndarray] | None,
              title: str, row_labels: Sequence[str] | None = None) -> None:
    """Rows: frames. Columns: RGB, then per task ground truth (and prediction when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from deltamtl.model.data.synthetic import CLASS_NAMES
    from deltamtl.model.tasks import TASKS

    palette = _palette(len(CLASS_NAMES))
    lo, hi = float(np.percentile(gt["depth"], 1)), float(np.percentile(gt["depth"], 99))
    columns: list[tuple[str, str, str]] = [("rgb", "", "RGB")]
    for t in TASKS:
        columns.append((t, "gt", f"{t} (truth)"))
        if pred is not None:
            columns.append((t, "pred", f"{t} (pred)" if t in pred else f"{t} (no model)"))
    n = rgb.shape[0]
    fig, axes = plt.subplots(n, len(columns), figsize=(1.7 * len(columns), 1.8 * n + 0.9), squeeze=False)
    for r in range(n):
        g = _panels({t: gt[t][r] for t in TASKS}, palette, (lo, hi))
        p = _panels({t: pred[t][r] for t in pred}, palette, (lo, hi)) if pred else {}
        for c, (task, kind, label) in enumerate(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if task == "rgb":
                ax.imshow(rgb[r])
            elif kind == "gt":
                ax.imshow(g[task])
            elif task in p:
                ax.imshow(p[task])
            else:
                ax.imshow(np.full(rgb[r].shape, 0.85, np.float32))
            if r == 0:
                ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(row_labels[r] if row_labels else f"frame {r}", fontsize=8)
    handles = [matplotlib.patches.Patch(color=palette[i], label=name) for i, name in enumerate(CLASS_NAMES)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7, frameon=False)
    fig.suptitle(f"{title}   depth colour range {lo / 1000:.1f}-{hi / 1000:.1f} m (viridis); "
                 "normals as (n+1)/2; edges probability", fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    _savefig_atomic(fig, path)
    plt.close(fig)


# -- steps ----------------------------------------------------------------------------------


def step_render(ctx: DemoContext) -> dict:
    from deltamtl.model.data.datasets import clip_seed
    from deltamtl.model.data.synthetic import render_clip

    size = ctx.cfg["model"]["img_size"]
    seed = clip_seed(ctx.split, ctx.cfg["data"]["seed"], 0)
    t0 = time.perf_counter()
    clip = render_clip(seed, ctx.cfg["data"]["frames_per_clip"], size, size)
    dt = time.perf_counter() - t0
    n = min(PREVIEW_FRAMES, clip.rgb.shape[0])
    gt = {"semseg": clip.semseg[:n], "depth": clip.depth[:n], "normals": clip.normals[:n],
          "edges": clip.edges[:n].astype(np.float32)}
    path = ctx.out / "clip_gt.png"
    save_grid(path, clip.rgb[:n], gt, None, f"synthetic {ctx.split} clip 0 (seed {seed}), ground truth")
    ctx.artifacts.append(path.name)
    return {"clip_seed": seed, "frames": int(clip.rgb.shape[0]), "size": size, "render_s": round(dt, 3),
            "edge_fraction": float(clip.edges.mean()), "depth_mm_range": [float(clip.depth.min()), float(clip.depth.max())]}


def step_train_base(ctx: DemoContext) -> dict:
    from deltamtl.model.checkpoint import load_checkpoint
    from deltamtl.model.training.train import CHECKPOINT_NAME, LOG_NAME, train

    run_dir = ctx.out / "st_semseg"
    cfg = load_config(ctx.config_path, [*ctx.overrides, f"train.steps={ctx.steps}", f"train.eval_every={ctx.steps}"])
    ctx.cfg = cfg
    # Re-running the demo continues (or just reuses) a run with the same config; any other
    # run in the folder is replaced.
    resume = (run_dir / CHECKPOINT_NAME).is_file() and load_checkpoint(run_dir / CHECKPOINT_NAME)["config"] == cfg
    if not resume and (run_dir / LOG_NAME).is_file():
        (run_dir / LOG_NAME).unlink()
    t0 = time.perf_counter()
    result = train(cfg, "st", run_dir, task="semseg", resume=resume, progress=True)
    return {"checkpoint": str(run_dir / "last.pt"), "steps": result["step"],
            "train_s": round(time.perf_counter() - t0, 1), "val_metrics": result["metrics"]}


def step_evaluate(ctx: DemoContext) -> dict:
    from deltamtl.model.training.evaluate import format_report
    from deltamtl.model.training.evaluate_checkpoint import evaluate_checkpoint, load_trained_model

    ckpt = ctx.out / "st_semseg" / "last.pt"
    result = evaluate_checkpoint(ckpt, ctx.split)
    path = ctx.out / f"eval_{ctx.split}.json"
    atomic_write_text(path, json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n")
    ctx.artifacts.append(path.name)
    print(format_report(result["model"], result["baselines"], result["acceptance"]))
    model, _, _ = load_trained_model(ckpt)
    ctx.models["semseg"] = model
    return {k: result[k] for k in ("split", "n_images", "model", "baselines", "acceptance")}


def step_preview(ctx: DemoContext) -> dict:
    from deltamtl.model.training.evaluate import predictions_to_numpy
    from deltamtl.model.training.recipe import synthetic_split

    ds = synthetic_split(ctx.cfg, ctx.split)
    clip = ds.clips[0]
    n = min(PREVIEW_FRAMES, clip.rgb.shape[0])
    images = torch.stack([ds[i]["image"] for i in range(n)])
    borrowed = _borrow_st_models(ctx)
    pred = {}
    with torch.no_grad():
        for task, model in ctx.models.items():
            pred[task] = predictions_to_numpy(task, model(images, task)[task])
    gt = {"semseg": clip.semseg[:n], "depth": clip.depth[:n], "normals": clip.normals[:n],
          "edges": clip.edges[:n].astype(np.float32)}
    path = ctx.out / f"preview_{ctx.split}.png"
    save_grid(path, clip.rgb[:n], gt, pred, f"{ctx.split} clip 0: ground truth and predictions")
    ctx.artifacts.append(path.name)
    return {"file": path.name, "tasks_predicted": sorted(pred), "borrowed_checkpoints": borrowed}


EMULATE_FRAMES = 10


def step_quantise_export(ctx: DemoContext) -> dict:
    """int8 quantisation of the base model the demo trained + export bundle. Sub-task deltas
    are trained against one particular base (``make sharing-train``), so the demo looks for
    them only under its own folder (<out>/sharing/<task>/step3); without them the bundle
    holds the base task alone, which the next step still runs in DENSE and TEMPORAL modes."""
    import copy

    from deltamtl.model.export.bundle import bundle_summary, format_summary
    from deltamtl.model.quant.cli import quantise

    cfg = copy.deepcopy(ctx.cfg)
    cfg["sharing"]["base_checkpoint"] = str(ctx.out / "st_semseg" / "last.pt")
    cfg["sharing"]["out_root"] = str(ctx.out / "sharing")
    res = quantise(cfg, ctx.out / "bundle", accuracy=True, require_subtasks=False,
                   report_json=ctx.out / "quant_report.json")
    summary = bundle_summary(res["bundle"])
    print(format_summary(summary))
    ctx.artifacts += ["quant_report.json", "bundle/manifest.yaml"]
    return {"tasks": res["tasks"], "accuracy": res["accuracy"],
            "bundle": {k: summary[k] for k in ("n_sites", "total_bytes", "storage_bytes",
                                               "core_limits")}}


def step_emulate(ctx: DemoContext) -> dict:
    """Run the exported bundle on a held-out clip through the one video runner twice: with
    the numpy golden core and with the C++ kernels (fetch -> core -> commit over a DDR
    image, the emulated accelerator); every site output must agree bit for bit."""
    from deltamtl.hls.emulator import HlsSystemExecutor
    from deltamtl.host.runner import GoldenRunner
    from deltamtl.model.data.datasets import clip_seed
    from deltamtl.model.data.synthetic import render_clip
    from deltamtl.model.export.bundle import load_bundle

    qm = load_bundle(ctx.out / "bundle")
    size = ctx.cfg["model"]["img_size"]
    clip = render_clip(clip_seed(ctx.split, ctx.cfg["data"]["seed"], 1), EMULATE_FRAMES, size, size)
    runs = {}
    for name, executor in (("golden", None), ("emulator", HlsSystemExecutor(qm.core_limits()))):
        runner = GoldenRunner(qm, executor=executor, trace=True)
        t0 = time.perf_counter()
        runner.run_clip(clip.rgb)
        runs[name] = (runner, time.perf_counter() - t0)
    golden, emulated = runs["golden"][0], runs["emulator"][0]
    sites = mismatches = 0
    for frame_g, frame_e in zip(golden.trace, emulated.trace, strict=True):
        for key, (_x, y) in frame_g.items():
            sites += 1
            mismatches += int(not np.array_equal(y, frame_e[key][1]))
    if mismatches:
        raise RuntimeError(f"emulated accelerator differs from the golden model at {mismatches} "
                           f"of {sites} site outputs")
    totals = golden.totals()
    saved = golden.resident_savings()
    return {"frames": EMULATE_FRAMES, "site_outputs_compared": sites, "mismatches": mismatches,
            "golden_s": round(runs["golden"][1], 2), "emulator_s": round(runs["emulator"][1], 2),
            "per_task": totals, "ddr_bytes_read": saved["bytes_read"],
            "ddr_bytes_read_without_residency": saved["bytes_read_without_residency"]}


def step_sharing(ctx: DemoContext) -> dict:
    """The sharing chain (steps 1-3 of docs/sharing.md) for depth, normals and edges, each
    starting from the base the demo just trained, at the demo's short step counts."""
    from deltamtl.model.sharing.train_steps import run_all

    s1, s2, s3 = ctx.sharing_steps
    out: dict[str, Any] = {"steps": {"step1": s1, "step2": s2, "step3": s3}}
    for task in ctx.cfg["sharing"]["subtasks"]:
        # the task's per_task entries apply (lambda_w, delta caps) except its data set and
        # step counts: the demo trains on the clips it rendered, for the short chain
        cfg = load_config(ctx.config_path, [
            *ctx.overrides, f"data.train_clips={ctx.cfg['data']['train_clips']}",
            f"sharing.base_checkpoint={ctx.out / 'st_semseg' / 'last.pt'}",
            f"sharing.out_root={ctx.out / 'sharing'}",
            f"sharing.st_checkpoint={ctx.out / 'no_st_models' / 'st_{task}' / 'last.pt'}",
            f"sharing.steps_step1={s1}", f"sharing.steps_step2={s2}", f"sharing.steps_step3={s3}"],
            task=task)
        t0 = time.perf_counter()
        res = run_all(cfg, [task])[task]
        out[task] = {"train_s": round(time.perf_counter() - t0, 1),
                     "val_metrics": res["step3"]["metrics"]}
    return out


def step_stream(ctx: DemoContext) -> dict:
    """Stream two held-out synthetic clips back to back (a scene cut at the join) with all
    four tasks through the accelerator backend, adaptive keyframes; replay the same
    keyframe decisions on the golden model and require the same bits; write the overlays,
    statistics and a ground truth vs prediction grid."""
    from deltamtl.host.backends import BACKENDS, make_executor
    from deltamtl.host.overlays import predictions
    from deltamtl.host.runner import GoldenRunner
    from deltamtl.host.scheduler import override_policy
    from deltamtl.host.sources import SyntheticSource
    from deltamtl.host.stream import OverlayWriter, Streamer
    from deltamtl.host.stream import write_report as write_stream_report
    from deltamtl.model.data.datasets import clip_seed
    from deltamtl.model.export.bundle import load_bundle

    backend = ctx.backend or ("virtual" if "virtual" in BACKENDS else "emulated")
    qm = load_bundle(ctx.out / "bundle")
    if not qm.policy.thresholds:
        qm = dataclasses.replace(qm, policy=override_policy(
            qm.policy, thresholds={t: [DEMO_STREAM_TH] * qm.depth for t in qm.tasks}))
    size = int(qm.mcfg["img_size"])
    seeds = [clip_seed(ctx.split, ctx.cfg["data"]["seed"], i) for i in (2, 3)]
    source = SyntheticSource(seeds, STREAM_FRAMES, (size, size))
    out = ctx.out / "stream"
    out.mkdir(parents=True, exist_ok=True)
    streamer = Streamer(qm, backend, "adaptive")
    writer = OverlayWriter(streamer.runner.tasks, streamer.num_classes, source.fps)
    results = []

    def keep(res) -> None:
        writer(res)
        results.append(res)

    t0 = time.perf_counter()
    streamer.run(source, progress=True, on_result=keep)
    stream_s = time.perf_counter() - t0
    files = [f"stream/{f}" for f in writer.write(out)]
    write_stream_report(out, streamer, None, [f.split("/", 1)[1] for f in files],
                        {"backend": backend, "source": f"synthetic:{seeds[0]},{seeds[1]}",
                         "keyframes": "adaptive", "frames": len(results)})
    # the golden model on the same frames and keyframe decisions: bit for bit
    golden = GoldenRunner(streamer.qm, make_executor("golden", streamer.qm))
    mismatched = [r.stats.frame for r in results
                  if any(not np.array_equal(a, r.outputs[t]) for t, a in
                         golden.run_frame(r.rgb, keyframe=r.stats.keyframe).items())]
    if mismatched:
        raise RuntimeError(f"{backend} differs from the golden model at frames {mismatched}")
    # task sharing alone (every frame a keyframe) for the "MACs saved" comparison
    dense_k = Streamer(qm, "golden", 1)
    dense_k.run(source)
    t = streamer.stats.totals()
    k1 = dense_k.stats.totals()["total_macs"]
    # four predictions next to the ground truth, frames around the cut
    picks = [0, STREAM_FRAMES - 1, STREAM_FRAMES, 2 * STREAM_FRAMES - 1]
    clips = source.clips
    gt = {name: np.concatenate([getattr(c, name) for c in clips])[picks] for name in ("semseg", "depth", "normals")}
    gt["edges"] = np.concatenate([c.edges for c in clips])[picks].astype(np.float32)
    preds = [predictions(results[i].outputs) for i in picks]
    pred = {task: np.stack([p[task] * (1000.0 if task == "depth" else 1.0) for p in preds])
            for task in preds[0]}
    save_grid(out / "stream_predictions.png", source.frames[picks], gt, pred,
              f"streamed on {backend}: frames {picks} (cut at {STREAM_FRAMES})",
              row_labels=[f"frame {i}" for i in picks])
    files.append("stream/stream_predictions.png")
    ctx.artifacts += files + ["stream/report.md"]
    return {"backend": backend, "tasks": list(streamer.runner.tasks), "frames": t["frames"],
            "thresholds": {task: qm.policy.threshold(task, 0) for task in qm.tasks},
            "frames_per_s": round(t["frames"] / stream_s, 2),
            "keyframe_reasons": t["keyframe_reasons"],
            "keyframes": [(f.frame, f.reason) for f in streamer.stats.frames if f.keyframe],
            "macs_executed": t["total_macs"], "macs_four_single_task_models": t["total_dense_macs"],
            "macs_keyframe_every_frame": k1,
            "saved_vs_four_single_task_models": round(1 - t["total_macs"] / t["total_dense_macs"], 4),
            "saved_vs_keyframe_every_frame": round(1 - t["total_macs"] / k1, 4),
            "macs_per_task": t["macs"], "ddr_bytes_read": t["ddr_bytes_read"],
            "bit_exact_vs_golden": True, "time_split_s": {k: round(v, 3) for k, v in t["times_s"].items()}}


def _borrow_st_models(ctx: DemoContext) -> dict[str, str]:
    """Load single-task models of the other tasks from ``ctx.st_runs`` (same model config)
    so the preview shows every task; returns task -> checkpoint used."""
    from deltamtl.model.checkpoint import load_checkpoint
    from deltamtl.model.tasks import TASKS
    from deltamtl.model.training.evaluate_checkpoint import load_trained_model

    used: dict[str, str] = {}
    if ctx.st_runs is None:
        return used
    for task in TASKS:
        path = ctx.st_runs / f"st_{task}" / "last.pt"
        if task in ctx.models or not path.is_file():
            continue
        ckpt = load_checkpoint(path)
        if ckpt["config"]["model"] != ctx.cfg["model"] or tuple(ckpt["tasks"]) != (task,):
            continue
        ctx.models[task], _, _ = load_trained_model(path)
        used[task] = str(path)
    return used


STEPS: list[Step] = [
    Step("render", "Render a synthetic clip and plot its ground truth", step_render),
    Step("train_base", "Train the single-task semantic-segmentation ViT (recipe st)", step_train_base),
    Step("evaluate", "Evaluate it on held-out clips against trivial baselines", step_evaluate),
    Step("preview", "Plot ground truth and predictions", step_preview),
    Step("sharing", "Short sharing chain (steps 1-3) for depth, normals and edges on the base",
         step_sharing),
    Step("quantise_export", "Quantise to int8, compare with float, write the export bundle",
         step_quantise_export),
    Step("emulate", "Run the bundle on video: golden core vs emulated accelerator, bit for bit",
         step_emulate),
    Step("stream", "Stream a synthetic clip with all four tasks through the accelerator backend",
         step_stream),
]


# -- report ---------------------------------------------------------------------------------


def _md_section(name: str, desc: str, res: dict, seconds: float) -> list[str]:
    lines = [f"## {name}: {desc}", "", f"time: {seconds:.1f} s", ""]
    if name == "evaluate" and "acceptance" in res:
        lines += ["| task | metric | model | baseline | ratio | required | result |",
                  "|---|---|---|---|---|---|---|"]
        for task, a in res["acceptance"].items():
            lines.append(f"| {task} | {a['metric']} | {a['model']:.4f} | {a['baseline']:.4f} | {a['ratio']:.3f} "
                         f"| {a['required']} | {'PASS' if a['pass'] else 'FAIL'} |")
        lines.append("")
        for task, metrics in res["model"].items():
            lines.append(f"{task}: " + ", ".join(f"{k} {v:.4f} (baseline {res['baselines'][task].get(k, float('nan')):.4f})"
                                                 for k, v in metrics.items()))
        lines.append("")
    elif name == "stream":
        lines += [f"Backend `{res['backend']}`, tasks {', '.join(res['tasks'])}, {res['frames']} frames "
                  f"({res['frames_per_s']} frames/s), thresholds {res['thresholds']}; every output equals "
                  "the golden model's bit for bit.", "",
                  "| accelerator MACs | total | saved by streaming |", "|---|---|---|",
                  f"| executed (adaptive keyframes) | {res['macs_executed']:,} | |",
                  f"| every frame a keyframe (task sharing only) | {res['macs_keyframe_every_frame']:,} "
                  f"| {res['saved_vs_keyframe_every_frame']:.1%} |",
                  f"| four single-task models, dense | {res['macs_four_single_task_models']:,} "
                  f"| {res['saved_vs_four_single_task_models']:.1%} |", "",
                  "Keyframes (frame, reason): " + ", ".join(f"{f} {r}" for f, r in res["keyframes"]), "",
                  "![four predictions](stream/stream_predictions.png)", "",
                  "![overlays](stream/overlays.gif) (also [overlays.mp4](stream/overlays.mp4); statistics in "
                  "[stream/report.md](stream/report.md))", ""]
    else:
        lines += ["```json", json.dumps(json_safe(res), indent=2, default=str), "```", ""]
    return lines


def write_report(ctx: DemoContext, timings: dict[str, float], steps: Sequence[Step]) -> None:
    report = {"config": ctx.config_path, "steps": ctx.steps, "split": ctx.split, "timings_s": timings,
              "results": ctx.results, "artifacts": ctx.artifacts}
    atomic_write_text(ctx.out / "report.json", json.dumps(json_safe(report), indent=2, default=str, allow_nan=False) + "\n")
    md = ["# deltamtl demo report", "",
          f"config `{ctx.config_path}`, {ctx.steps} training steps, evaluation split `{ctx.split}`, "
          f"total {sum(timings.values()):.1f} s", ""]
    for step in steps:
        if step.name in ctx.results:
            md += _md_section(step.name, step.description, ctx.results[step.name], timings[step.name])
    md += ["## files", ""] + [f"* [{a}]({a})" for a in ctx.artifacts] + [""]
    md += [f"![preview]({a})" for a in ctx.artifacts if a.endswith(".png")] + [""]
    atomic_write_text(ctx.out / "report.md", "\n".join(md))


def run_demo(ctx: DemoContext, steps: Sequence[Step] = STEPS) -> dict:
    ctx.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    for i, step in enumerate(steps, 1):
        print(f"[demo {i}/{len(steps)}] {step.name}: {step.description}", flush=True)
        t0 = time.perf_counter()
        ctx.results[step.name] = step.run(ctx)
        timings[step.name] = round(time.perf_counter() - t0, 2)
        write_report(ctx, timings, steps)  # keep the report current if a later step fails
    print(f"[demo] wrote {ctx.out / 'report.md'} and report.json ({sum(timings.values()):.0f} s)")
    return ctx.results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="training steps of the base model")
    p.add_argument("--split", default="test", choices=("val", "test"))
    # One intra-op thread: on a shared 2-core machine two threads oversubscribe and run
    # several times slower; on an idle machine one thread costs ~1.5x at most.
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--st-runs", default="runs",
                   help="folder holding st_<task>/last.pt of other tasks to preview too ('' to skip)")
    p.add_argument("--sharing-steps", default=",".join(map(str, DEFAULT_SHARING_STEPS)),
                   metavar="S1,S2,S3", help="steps of the sharing chain's steps 1, 2, 3 per sub-task")
    p.add_argument("--backend", default=None,
                   help="streaming backend (default: virtual when registered, else emulated)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable")
    args = p.parse_args(argv)
    try:
        sharing_steps = tuple(int(v) for v in args.sharing_steps.split(","))
    except ValueError:
        sharing_steps = ()
    if len(sharing_steps) != 3 or min(sharing_steps) < 1:
        p.error(f"--sharing-steps {args.sharing_steps!r}: expected three positive integers S1,S2,S3")
    torch.set_num_threads(max(1, args.threads))
    # Rendered clips are cached on disk beside the demo folder so re-runs skip rendering.
    os.environ.setdefault("DELTAMTL_DATA_CACHE", str(Path(args.out).parent / "data_cache"))
    overrides = [f"train.threads={args.threads}", *args.overrides]
    cfg = load_config(args.config, overrides)
    ctx = DemoContext(cfg=cfg, out=Path(args.out), config_path=args.config, steps=args.steps, split=args.split,
                      overrides=overrides, st_runs=Path(args.st_runs) if args.st_runs else None,
                      sharing_steps=sharing_steps, backend=args.backend)  # type: ignore[arg-type]
    run_demo(ctx)
    accept = ctx.results.get("evaluate", {}).get("acceptance", {})
    return 0 if all(a["pass"] for a in accept.values()) else 1

