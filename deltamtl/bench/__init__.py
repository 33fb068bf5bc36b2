"""`deltamtl bench` (`make bench`): one run that measures the project against its anchors,
side by side, and writes ``bench.json``, ``bench.md`` and PNG plots (docs/bench.md).

    deltamtl bench --out runs/bench [--quick] [--only footage ...] [--bundle PATH]

Sections, one module each (a list of named steps over one context, like the demo):

* ``footage`` (:mod:`.footage`)  real footage beside synthetic: densities and MACs
* ``sharing`` (:mod:`.sharing`)  the sharing table; analytic MACs/params of the board and
  paper-scale configs at the measured densities beside the paper's NYUD-v2 figures
* ``engine``  (:mod:`.engine`)   today's RTL core in simulation: cycles per frame, delta
  versus dense, MAC utilisation, cycle-model error
* ``board``   (:mod:`.board`)    frames/s of vit-tiny-zcu104 projected from the cycle model
  with a DDR bound; host-side costs; roofline
* ``cpu``     (:mod:`.cpu`)      frames/s of the golden and emulated backends; the best CPU
  delta path against dense PyTorch
* plug-ins: the virtual ZCU104's register accesses and ``deltamtl stream``'s frames/s, read
  through their APIs when those branches are in the tree

The models: :mod:`.model` (a found 4-task bundle, else one trained here). ``--quick`` (CI)
uses the small engine-sized model everywhere and skips the RTL simulation.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deltamtl.bench.context import REPO, BenchContext
from deltamtl.contract.atomic import atomic_write_text

SCHEMA = 1
SECTIONS = ("footage", "sharing", "engine", "board", "cpu")
BOARD_CONFIG = "configs/vit-tiny-zcu104.yaml"
PAPER_CONFIG = "configs/vit-b-nyud.yaml"


@dataclass
class Models:
    """Trained lazily, once per run: the sections that need a model ask for it."""

    ctx: BenchContext
    bundle: Path | None
    _headline: Any = None
    _engine: Any = None

    @property
    def headline(self) -> Any:
        if self._headline is None:
            from deltamtl.bench.model import headline_model

            self._headline = headline_model(self.ctx.out, self.ctx.quick, self.bundle, self.ctx.log)
        return self._headline

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from deltamtl.bench.model import engine_recipe, train_model

            r = engine_recipe(self.ctx.quick)
            if self._headline is not None and self._headline.recipe == r.as_dict():
                self._engine = self._headline  # --quick: one small model serves both
            else:
                self._engine = train_model(r, self.ctx.out / "model" / r.name, self.ctx.log)
        return self._engine


def _model_info(m: Any) -> dict:
    qm = m.qm
    return {"source": m.source, "bundle": str(m.bundle), "recipe": m.recipe,
            "train_seconds": round(m.train_seconds, 1), "notes": m.notes,
            "tasks": list(qm.tasks), "img_size": int(qm.mcfg["img_size"]),
            "tokens": int(qm.tokens), "depth": int(qm.depth),
            "embed_dim": int(qm.mcfg["embed_dim"]),
            "policy": {"keyframe_interval": qm.policy.keyframe_interval,
                       "thresholds": qm.policy.thresholds, "boundaries": qm.policy.boundaries},
            "threshold_selection": m.selection}


# -- sections ------------------------------------------------------------------------------
def section_footage(ctx: BenchContext, models: Models, report: dict) -> dict:
    from deltamtl.bench import footage, workload
    from deltamtl.contract.limits import TINY_LIMITS

    m = models.headline
    n = 6 if ctx.quick else 20
    photos = ("astronaut", "coffee") if ctx.quick else ("astronaut", "coffee", "chelsea", "rocket")
    clips = workload.footage(m.qm, n, 1 if ctx.quick else 2, photos, ctx.seed)
    lanes = TINY_LIMITS.lanes if m.qm.tokens > 24 else 8  # the core build the model fits
    res = footage.run(ctx, m.qm, clips, lanes)
    res["model"] = _model_info(m)
    res["provenance"] = ctx.provenance(m.recipe["config"] if m.recipe else str(m.bundle))
    footage.plot(ctx, res, res["provenance"]["config"])
    return res


def _densities(report: dict, kind: str):  # -> (board.Densities, keyframe interval)
    from deltamtl.bench.board import Densities

    f = report["footage"]
    row = f["kinds"][kind]
    act = {t: {mode: (v if v is not None else 0.0) for mode, v in modes.items()}
           for t, modes in row["act_density"].items()}
    union = {t: {mode: v for mode, v in modes.items() if v is not None}
             for t, modes in row["union_density"].items()}
    dens = Densities(act=act, union=union, embed=row["embed_temporal_density"] or 0.0,
                     embed_union=row["embed_temporal_union_density"] or 0.0, dw=f["dw_density"],
                     boundaries={t: int(b) for t, b in f["boundaries"].items()})
    return dens, int(f["keyframe_interval"])


def _need_footage(ctx: BenchContext, models: Models, report: dict) -> None:
    if "footage" not in report:  # the projections need measured densities
        report["footage"] = section_footage(ctx, models, report)


def section_sharing(ctx: BenchContext, models: Models, report: dict) -> dict:
    from deltamtl.bench import sharing

    _need_footage(ctx, models, report)
    out: dict = {"sharing_run": sharing.sharing_report(), "published_nyud": sharing.PUBLISHED_NYUD,
                 "analytic": {}}
    for kind in report["footage"]["kinds"]:
        d, k = _densities(report, kind)
        out["analytic"][kind] = {cfg: sharing.analytic(REPO / cfg, d.act, d.embed, d.dw, d.boundaries, k)
                                 for cfg in (BOARD_CONFIG, PAPER_CONFIG)}
    out["density_source"] = (f"the bench's {report['footage']['model']['source']} model "
                             f"({report['footage']['model']['img_size']}px, depth "
                             f"{report['footage']['model']['depth']}), pooled per kind of footage")
    out["provenance"] = ctx.provenance(f"{BOARD_CONFIG}, {PAPER_CONFIG}")
    _plot_sharing(ctx, out)
    return out


def _plot_sharing(ctx: BenchContext, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from deltamtl.bench.sharing import ROWS

    kinds = list(res["analytic"])
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(ROWS))
    bars = [("the paper's ViT-B NYUD-v2 GFLOPs (published)", [res["published_nyud"][r]["gflops"] for r in ROWS])]
    for kind in kinds:
        rows = res["analytic"][kind][PAPER_CONFIG]["rows"]
        bars.append((f"vit-b-nyud analytic, {kind} densities", [rows[r]["gmacs"] for r in ROWS]))
    w = 0.8 / len(bars)
    for k, (label, vals) in enumerate(bars):
        ax.bar(x + (k - (len(bars) - 1) / 2) * w, vals, w, label=label)
    ax.set_xticks(x, ROWS, fontsize=8)
    ax.set_ylabel("G multiply-adds per image, 4 tasks")
    ax.set_title("Compute sharing at paper scale: analytic at measured densities vs published")
    ax.legend(fontsize=7)
    ctx.save_figure("sharing", fig, "fig_sharing.png",
                    "ViT-B/16 416x416, 4 tasks: GMACs per row, analytic at the bench model's "
                    "densities beside the paper's published NYUD-v2 GFLOPs", PAPER_CONFIG)
    plt.close(fig)


def section_engine(ctx: BenchContext, models: Models, report: dict) -> dict:
    from deltamtl.bench import engine
    from deltamtl.host.model_vectors import clip_frames

    m = models.engine
    frames = clip_frames(m.qm, 3 if ctx.quick else 6, seed=ctx.seed)
    res = engine.run_engine(m.qm, frames, simulate=not ctx.quick)
    if ctx.quick:
        res["simulation_skipped"] = "--quick: cycle model only (the RTL replay takes minutes)"
    res["model"] = _model_info(m)
    res["provenance"] = ctx.provenance(m.recipe["config"] if m.recipe else None)
    return res


def section_board(ctx: BenchContext, models: Models, report: dict) -> dict:
    from deltamtl.bench import board, cpu

    _need_footage(ctx, models, report)
    config = REPO / BOARD_CONFIG
    m = models.headline
    size = int(m.qm.mcfg["img_size"])
    from deltamtl.host.model_vectors import clip_frames

    driver = cpu.driver_plugin(m.qm, clip_frames(m.qm, 3 if ctx.quick else 6, seed=ctx.seed))
    regs, regs_src = None, ""
    if driver.get("available") and "steady_per_frame" in driver:
        regs = driver["steady_per_frame"]
        regs_src = f"virtual ZCU104, mean of frames after the first ({size}px bench model)"
    out: dict = {"projections": {}, "driver": driver}
    for kind in report["footage"]["kinds"]:
        dens, k = _densities(report, kind)
        out["projections"][kind] = board.project(config, dens, k, registers_per_frame=regs,
                                                 registers_source=regs_src)
    headline = report["footage"]["headline_kind"]
    dens, k = _densities(report, headline)
    out["sweep"] = board.density_sweep(config, dens.dw, dens.boundaries)
    out["heatvit"] = board.heatvit_dense_equivalent_gops(config)
    out["published_zcu102"] = [dict(zip(("name", "model", "latency_ms", "gops"), r, strict=True))
                               for r in board.PUBLISHED_ZCU102]
    out["headline_kind"] = headline
    out["provenance"] = ctx.provenance(BOARD_CONFIG)
    board.plot_roofline(out["projections"][headline], out["heatvit"], ctx.out / "fig_roofline.png",
                        f"Roofline of the ZCU104: the engines projected for {BOARD_CONFIG} "
                        f"({headline} densities) and the published ZCU102 designs",
                        ctx.saver("board", BOARD_CONFIG))
    return out


def section_cpu(ctx: BenchContext, models: Models, report: dict) -> dict:
    from deltamtl.bench import cpu
    from deltamtl.host.model_vectors import clip_frames
    from threadpoolctl import threadpool_limits

    m = models.headline
    frames = clip_frames(m.qm, 5 if ctx.quick else 20, seed=ctx.seed)
    repeats = 1 if ctx.quick else 3
    # one BLAS thread, like PyTorch's (cpu.THREADS): the golden core's matrices are small,
    # and two BLAS threads on a shared 2-core machine stall (a 64px frame took 2x as long)
    with threadpool_limits(limits=cpu.THREADS, user_api="blas"):
        fps = {b: cpu.backend_fps(m.qm, frames, b, repeats) for b in ("golden", "emulated")}
        res: dict = {"backends": fps, "goal_frames_per_s": 20.0, "blas_threads": cpu.THREADS,
                     "paths": cpu.cpu_paths(m.qm, m.cfg, m.selection, frames, 1 if ctx.quick else 5, fps),
                     "stream": cpu.stream_plugin(m.qm, frames, ("golden", "emulated"))}
    res["model"] = {"img_size": int(m.qm.mcfg["img_size"]), "source": m.source}
    res["provenance"] = ctx.provenance(m.recipe["config"] if m.recipe else str(m.bundle))
    return res


STEPS: dict[str, Callable[[BenchContext, Models, dict], dict]] = {
    "footage": section_footage, "sharing": section_sharing, "engine": section_engine,
    "board": section_board, "cpu": section_cpu,
}


def headline(report: dict) -> dict:
    """The figures the closing note quotes (only those the run measured)."""
    h: dict = {}
    f = report.get("footage")
    if f:
        kinds = f["kinds"]
        h["headline_footage"] = f["headline_kind"]
        h["site_mmacs_between_keyframes"] = {k: (v["site_macs_other"] or 0) / 1e6 for k, v in kinds.items()}
        h["site_mmacs_keyframe"] = {k: (v["site_macs_keyframe"] or 0) / 1e6 for k, v in kinds.items()}
    e = report.get("engine")
    if e:
        h["engine_delta_over_dense_cycles"] = e["delta_vs_dense_cycles"]
        h["engine_scaled_over_v1_cycles"] = e["delta"]["scaled_over_v1_cycles"]
        h["engine_cycles_source"] = e["delta"]["cycles_source"]
        if e.get("simulated"):
            h["cycle_model_max_error"] = max(e[n]["cycle_model_error"]["max_abs_per_job"]
                                             for n in ("delta", "dense"))
    b = report.get("board")
    if b:
        proj = b["projections"][b["headline_kind"]]
        name = proj["headline_engine"]
        p = proj["engines"][name]["mean"]
        h["board_engine"] = proj["engines"][name]["label"]
        h["board_frames_per_s"] = {k: v["engines"][name]["mean"]["frames_per_s"]
                                   for k, v in b["projections"].items()}
        h["board_frames_per_s_by_engine"] = {n: e["mean"]["frames_per_s"]
                                             for n, e in proj["engines"].items()}
        h["board_bound"] = p["bound"]
        h["board_fraction_of_int8_peak"] = p["fraction_of_int8_peak"]
    c = report.get("cpu")
    if c:
        h["cpu_frames_per_s"] = {k: v["frames_per_s"] for k, v in c["backends"].items()}
        if "best_over_dense_wall_ratio" in c["paths"]:
            h["best_delta_over_dense_pytorch_wall"] = c["paths"]["best_over_dense_wall_ratio"]
    s = report.get("sharing")
    if s:
        kind = (f or {}).get("headline_kind")
        if kind in s["analytic"]:
            rows = s["analytic"][kind][PAPER_CONFIG]["rows"]
            h["vit_b_nyud_gmacs"] = {r: rows[r]["gmacs"] for r in rows}
    return h


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="deltamtl bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench")
    parser.add_argument("--quick", action="store_true",
                        help="CI: small model everywhere, fewer frames and repeats, no RTL simulation")
    parser.add_argument("--only", choices=SECTIONS, action="append",
                        help="run these sections (repeatable; default all)")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="a trained 4-task export bundle to measure (default: runs/quant/bundle "
                             "or runs/demo/bundle when present, else train one)")
    parser.add_argument("--seed", type=int, default=0, help="footage and clip seed")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = BenchContext(out=args.out, quick=args.quick, argv=argv, seed=args.seed,
                       log=lambda msg: print(msg, flush=True))
    models = Models(ctx, args.bundle)
    report: dict = {"schema": SCHEMA, "quick": args.quick, "provenance": ctx.provenance(),
                    "seconds": {}}
    t_all = time.perf_counter()
    for name in args.only or SECTIONS:
        t0 = time.perf_counter()
        ctx.log(f"bench: {name} ...")
        report[name] = STEPS[name](ctx, models, report)
        report["seconds"][name] = round(time.perf_counter() - t0, 1)
        ctx.log(f"bench: {name} done in {report['seconds'][name]} s")
    report["models"] = {n: _model_info(getattr(models, f"_{n}"))
                        for n in ("headline", "engine") if getattr(models, f"_{n}") is not None}
    report["total_seconds"] = round(time.perf_counter() - t_all, 1)
    report["headline"] = headline(report)
    report["figures"] = [{"file": f.file, "caption": f.caption, "section": f.section}
                         for f in ctx.figures]
    from deltamtl.bench.markdown import render

    atomic_write_text(args.out / "bench.json", json.dumps(report, indent=1, default=_json_default) + "\n")
    atomic_write_text(args.out / "bench.md", render(report))
    ctx.log(f"bench: wrote {args.out / 'bench.json'}, {args.out / 'bench.md'} and "
            f"{len(ctx.figures)} plots in {report['total_seconds']} s")
    return 0


def _json_default(obj: object) -> object:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
