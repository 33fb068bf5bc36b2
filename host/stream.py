"""Streaming: frames from a source -> preprocess -> the runner on a backend -> per-task
predictions -> colourised overlays, with a keyframe scheduler, per-frame statistics, fault
recovery and the no-drift check. ``deltamtl stream`` is :func:`main` (docs/streaming.md).

    deltamtl stream --bundle B --source S --backend golden --keyframes 8|adaptive|off --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from deltamtl.contract.atomic import atomic_path, atomic_write_text
from deltamtl.contract.formats import JobFlag, Mode
from deltamtl.contract.jobs import JobResult, SiteJob
from deltamtl.host.backends import BACKENDS, make_executor
from deltamtl.host.overlays import TASK_ORDER, overlay_row, predictions, save_grid_png
from deltamtl.host.runner import GoldenRunner, JobRecord, SiteExecutor
from deltamtl.host.scheduler import DEFAULT_DENSITY_LIMIT, KeyframeScheduler, override_policy
from deltamtl.host.sources import (
    Frame,
    FrameSource,
    Preprocess,
    SourceError,
    SyntheticSource,
    open_source,
)
from deltamtl.host.stats import FrameStats, StreamStats, frame_stats
from deltamtl.model.export.quantized_model import QuantizedModel
from deltamtl.model.tasks import EMBED


class TimedExecutor:
    """Wraps a backend's executor: wall time spent inside ``run_job`` (the accelerator
    stage), and the backend's register-access counter when it has one (``register_accesses``,
    the virtual and PYNQ backends); None otherwise."""

    def __init__(self, inner: SiteExecutor) -> None:
        self.inner = inner
        self.seconds = 0.0

    def run_job(self, job: SiteJob) -> JobResult:
        t0 = time.perf_counter()
        try:
            return self.inner.run_job(job)
        finally:
            self.seconds += time.perf_counter() - t0

    def reset(self) -> None:
        self.inner.reset()

    def __getattr__(self, name: str):
        # the optional chained-launch hooks (prepare_video, begin_frame, end_frame, recover,
        # docs/host.md) reach the backend: without them a chained executor never starts
        if name in ("prepare_video", "begin_frame", "end_frame", "recover"):
            return getattr(self.inner, name)
        raise AttributeError(name)

    @property
    def register_accesses(self) -> int | None:
        value = getattr(self.inner, "register_accesses", None)
        return None if value is None else int(value)


# ---------------------------------------------------------------------------------------
# No drift: the references the accelerator holds follow the last-sent rule exactly
# ---------------------------------------------------------------------------------------
def _keep(d: np.ndarray, th: int) -> np.ndarray:
    return np.where(np.abs(d) >= th, d, 0)


@dataclass
class DriftReport:
    frames: int = 0
    keyframes: int = 0
    inputs_checked: int = 0  # (frame, task, site) inputs compared with their reference
    elements_checked: int = 0
    over_threshold: int = 0  # elements with |x - x_ref| >= th (must stay 0)
    shadow_mismatches: int = 0  # references that differ from an independent numpy replay
    max_abs_error: dict[str, int] = field(default_factory=dict)  # task -> max |x - x_ref|
    thresholds: dict[str, int] = field(default_factory=dict)  # task -> max th used
    accumulators_checked: int = 0  # (task, site) y_ref recomputed exactly at the end
    accumulator_mismatches: int = 0  # int32 elements of y_ref != x_ref W^T + b
    accumulator_elements: int = 0

    @property
    def ok(self) -> bool:
        return (self.over_threshold == 0 and self.shadow_mismatches == 0
                and self.accumulator_mismatches == 0 and self.accumulators_checked > 0)

    def markdown(self) -> str:
        per_task = ", ".join(f"{t} max |x - x_ref| = {e} (th {self.thresholds.get(t)})"
                             for t, e in sorted(self.max_abs_error.items()))
        return (f"No drift: **{'PASS' if self.ok else 'FAIL'}** over {self.frames} frames "
                f"({self.keyframes} keyframe(s)): {self.inputs_checked:,} site inputs, "
                f"{self.elements_checked:,} int8 elements compared with the stored reference, "
                f"{self.over_threshold} at or over th; {per_task}; the stored references equal an "
                f"independent replay of the last-sent rule ({self.shadow_mismatches} mismatches); "
                f"at the end `y_ref == x_ref W^T + b` recomputed exactly for "
                f"{self.accumulators_checked} (task, site) accumulators, {self.accumulator_elements:,} "
                f"int32 elements, {self.accumulator_mismatches} mismatches.\n")


class DriftMonitor:
    """Checks, every frame, that each site input with a stored reference stays within th
    of it per element, and that the runner's references equal an independent replay of
    the last-sent rule (docs/architecture.md, "The integer contract"); :meth:`finish`
    recomputes every stored accumulator exactly."""

    def __init__(self, qm: QuantizedModel) -> None:
        self.qm = qm
        self.by_name = {sp.name: sp for sp in qm.sites}
        self.by_site = {(sp.layer, sp.site): sp for sp in qm.sites}  # qm.site() rebuilds its index per call
        self.shadow: dict[tuple[str, str], np.ndarray] = {}
        self.report = DriftReport()

    def reset(self) -> None:
        self.shadow.clear()

    def frame(self, runner: GoldenRunner, records: Sequence[JobRecord],
              inputs: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], keyframe: bool) -> None:
        rep, base = self.report, self.qm.base
        rep.frames += 1
        rep.keyframes += int(keyframe)
        for r in records:  # issue order: the base's job of a site comes before the sub-tasks'
            sp = self.by_site[(r.layer, r.site)]
            key = (r.task, sp.name)
            x = inputs[key][0].astype(np.int16)
            th = int(r.th)
            if Mode(r.mode) == Mode.DENSE:
                new = x
            elif Mode(r.mode) == Mode.TEMPORAL:
                new = self.shadow[key] + _keep(x - self.shadow[key], th)
            elif r.flags & JobFlag.EMIT_REF:  # TASK job above the boundary at a keyframe
                ref_b = self.shadow[(base, sp.name)]
                new = ref_b + _keep(x - ref_b, th)
            else:
                continue  # TASK job below the boundary: no reference of its own
            self.shadow[key] = new
            stored = runner.x_ref[key].astype(np.int16)
            rep.shadow_mismatches += int(not np.array_equal(stored, new))
            err = np.abs(x - stored)
            rep.inputs_checked += 1
            rep.elements_checked += int(x.size)
            rep.over_threshold += int((err >= th).sum())
            rep.max_abs_error[r.task] = max(rep.max_abs_error.get(r.task, 0), int(err.max(initial=0)))
            rep.thresholds[r.task] = max(rep.thresholds.get(r.task, 0), th)

    def finish(self, runner: GoldenRunner) -> DriftReport:
        """y_ref == x_ref (W_b + dW_k)^T + b_k in int32 two's complement, every stored pair."""
        rep = self.report
        for (task, name), x_ref in runner.x_ref.items():
            sp = self.by_name[name]
            w = sp.w.astype(np.int64)
            if task != self.qm.base and task in sp.dw:
                w = w + sp.dw[task].to_dense(sp.out_dim, sp.in_dim).astype(np.int64)
            acc = x_ref.astype(np.int64) @ w.T + sp.task_bias(task).astype(np.int64)
            want = acc.astype(np.int32)  # wrap-around, as the core's accumulator
            got = runner.y_ref[(task, name)]
            rep.accumulators_checked += 1
            rep.accumulator_elements += int(got.size)
            rep.accumulator_mismatches += int((got != want).sum())
        return rep


# ---------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------
@dataclass
class FrameResult:
    frame: Frame
    rgb: np.ndarray  # preprocessed model input, uint8 [H, W, 3]
    outputs: dict[str, np.ndarray]  # task -> head output [C, H, W]
    stats: FrameStats


class Streamer:
    """One stream: a runner on a backend, a keyframe scheduler, statistics."""

    def __init__(self, qm: QuantizedModel, backend: str = "golden", keyframes: str | int = "fixed",
                 density_limit: float = DEFAULT_DENSITY_LIMIT, max_interval: int = 0,
                 executor: SiteExecutor | None = None, drift: bool | None = None,
                 resize: str = "resize", tasks: Sequence[str] | None = None,
                 max_retries: int = 1) -> None:
        mode, policy = "fixed", qm.policy
        if isinstance(keyframes, int) or (isinstance(keyframes, str) and keyframes.isdigit()):
            policy = override_policy(qm.policy, interval=int(keyframes))
        else:
            mode = keyframes
        self.scheduler = KeyframeScheduler(qm, mode, policy, density_limit, max_interval)
        # The runner sees the scheduler's policy (thresholds, boundaries, and a K that keeps
        # references); the caller's model object is left as it was.
        self.qm = dataclasses.replace(qm, policy=self.scheduler.runner_policy())
        self.scheduler.qm = self.qm
        self.backend = backend
        self.executor = TimedExecutor(executor if executor is not None else make_executor(backend, self.qm))
        self.drift = DriftMonitor(self.qm) if (mode == "off" if drift is None else drift) else None
        self.runner = GoldenRunner(self.qm, self.executor, tasks=tasks, trace=self.drift is not None)
        size = int(self.qm.mcfg["img_size"])
        self.preprocess = Preprocess((size, size), resize)
        self.max_retries = int(max_retries)
        self.stats = StreamStats()
        self.num_classes = int(self.qm.mcfg.get("num_classes") or 20)

    def process(self, frame: Frame, io_s: float = 0.0) -> FrameResult:
        t0 = time.perf_counter()
        rgb = self.preprocess(frame)
        io_s += time.perf_counter() - t0
        embed = self.qm.site(-1, EMBED).name
        ref = self.runner.x_ref.get((self.qm.base, embed))
        decision = self.scheduler.decide(rgb, gap=frame.gap, x_ref=ref)
        retries = 0
        regs0 = self.executor.register_accesses
        acc0 = self.executor.seconds
        t1 = time.perf_counter()
        while True:
            n0 = len(self.runner.records)
            faults0 = len(self.runner.faults)
            try:
                outputs = self.runner.run_frame(rgb, keyframe=decision.keyframe)
                if len(self.runner.faults) > faults0:
                    # the runner recovered an accelerator fault itself (reset, the frame
                    # again as a keyframe): the statistics record it as a fault keyframe
                    decision = self.scheduler.fault_retry()
                    if self.drift is not None:
                        self.drift.reset()
                break
            except Exception:
                # A fault (time-out, refused job, device error): drop the failed frame's
                # records, reset the executor and the stored references, re-run as a keyframe.
                del self.runner.records[n0:]
                self.runner.trace.clear()
                if retries >= self.max_retries:
                    raise
                retries += 1
                self.runner.reset()
                if self.drift is not None:
                    self.drift.reset()
                decision = self.scheduler.fault_retry()
        run_s = time.perf_counter() - t1
        acc_s = self.executor.seconds - acc0
        records = self.runner.records[n0:]
        if self.drift is not None:
            self.drift.frame(self.runner, records, self.runner.trace.pop(), decision.keyframe)
        regs1 = self.executor.register_accesses
        fs = frame_stats(
            self.qm, records, frame=len(self.stats.frames), source_index=frame.index, t=frame.t,
            gap=frame.gap, keyframe=decision.keyframe, reason=decision.reason,
            register_accesses=None if regs0 is None or regs1 is None else regs1 - regs0,
            times_s={"io": io_s, "host_ops": run_s - acc_s, "accelerator": acc_s, "output": 0.0},
            retries=retries, embed_density=decision.predicted_density)
        self.stats.add(fs)
        return FrameResult(frame, rgb, outputs, fs)

    def run(self, source: FrameSource | Iterable[Frame], max_frames: int | None = None,
            progress: bool = False, on_result: Callable[[FrameResult], None] | None = None) -> StreamStats:
        """Stream every frame (up to ``max_frames``); ``on_result`` sees each result (its
        time counts as the frame's output stage)."""
        it = iter(source)
        bar = None
        if progress:
            from tqdm import tqdm

            total = len(source) if hasattr(source, "__len__") else None  # type: ignore[arg-type]
            bar = tqdm(total=min(total, max_frames) if total and max_frames else (max_frames or total),
                       unit="frame", desc=f"stream ({self.backend})")
        n = 0
        while max_frames is None or n < max_frames:
            t0 = time.perf_counter()
            fr = next(it, None)
            if fr is None:
                break
            res = self.process(fr, io_s=time.perf_counter() - t0)
            if on_result is not None:
                t1 = time.perf_counter()
                on_result(res)
                res.stats.times_s["output"] = time.perf_counter() - t1
            n += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"key {res.stats.reason}" if res.stats.keyframe else "")
        if bar is not None:
            bar.close()
        if isinstance(source, FrameSource):
            source.close()
        return self.stats

    def finish_drift(self) -> DriftReport | None:
        return None if self.drift is None else self.drift.finish(self.runner)


# ---------------------------------------------------------------------------------------
# Outputs: MP4, GIF, PNG grid, statistics, report
# ---------------------------------------------------------------------------------------
class OverlayWriter:
    """Collects one overlay row per frame and writes the MP4 (imageio-ffmpeg), the GIF and
    the PNG grid; every file goes through a temporary file and a rename."""

    def __init__(self, tasks: Sequence[str], num_classes: int, fps: float, grid_frames: int = 4,
                 scale: int = 4) -> None:
        self.tasks, self.num_classes, self.fps = tuple(tasks), num_classes, fps
        self.scale = scale
        self.rows: list[np.ndarray] = []
        self.titles: list[str] = []
        self.keyframes: list[int] = []  # row indices of keyframes
        self.grid_frames = grid_frames

    def __call__(self, res: FrameResult) -> None:
        s = res.stats
        label = f"{s.frame}" + (f" KEY {s.reason}" if s.keyframe else "")
        self.rows.append(overlay_row(res.rgb, predictions(res.outputs), self.scale, self.num_classes, label))
        self.titles.append(f"frame {s.frame}" + (f"\nkeyframe: {s.reason}" if s.keyframe else ""))
        if s.keyframe:
            self.keyframes.append(len(self.rows) - 1)

    def write(self, out: Path) -> list[str]:
        import imageio.v3 as iio

        if not self.rows:
            return []
        files = []
        with atomic_path(out / "overlays.mp4", suffix=".mp4") as tmp:
            # even sizes for yuv420p; macro_block_size=1 keeps the exact frame size
            iio.imwrite(tmp, np.stack(self.rows), plugin="FFMPEG", fps=self.fps, codec="libx264",
                        macro_block_size=1, pixelformat="yuv420p", ffmpeg_log_level="error")
        files.append("overlays.mp4")
        with atomic_path(out / "overlays.gif", suffix=".gif") as tmp:
            iio.imwrite(tmp, np.stack(self.rows), extension=".gif", plugin="pillow",
                        duration=int(1000 / self.fps), loop=0)
        files.append("overlays.gif")
        n = len(self.rows)
        pick = {int(round(i * (n - 1) / max(self.grid_frames - 1, 1))) for i in range(min(self.grid_frames, n))}
        # keyframes after the first (scene cuts, faults, drops) are what a reader looks for
        pick = sorted(pick | set(self.keyframes[1:self.grid_frames]))
        save_grid_png(str(out / "grid.png"), [self.rows[i] for i in pick], [self.titles[i] for i in pick],
                      TASK_ORDER, self.tasks)
        files.append("grid.png")
        return files


def write_report(out: Path, streamer: Streamer, drift: DriftReport | None, files: list[str],
                 header: dict[str, Any]) -> None:
    stats = streamer.stats
    stats.write_jsonl(out / "stats.jsonl")
    plots = stats.plot(out, streamer.qm.base) if stats.frames else []
    totals = stats.totals()
    summary = {"header": header, "totals": totals,
               "drift": None if drift is None else {**dataclasses.asdict(drift), "ok": drift.ok}}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n")
    md = ["# deltamtl stream report", "",
          ", ".join(f"{k} `{v}`" for k, v in header.items()), "", "## Statistics", "", stats.markdown()]
    if drift is not None:
        md += ["## No drift", "", drift.markdown()]
    md += ["## Files", ""] + [f"* [{f}]({f})" for f in [*files, "stats.jsonl", "summary.json", *plots]]
    md += [""] + [f"![{f}]({f})" for f in [*files, *plots] if f.endswith((".png", ".gif"))] + [""]
    atomic_write_text(out / "report.md", "\n".join(md))


def _parse_task_values(p: argparse.ArgumentParser, items: Sequence[str], what: str,
                       depth: int) -> dict[str, Any]:
    """``TASK=V`` (boundary) or ``TASK=V[,V..]`` (thresholds: one for every block or one
    per block) -> {task: value}; errors name the option and the value."""
    out: dict[str, Any] = {}
    for item in items:
        task, sep, value = item.partition("=")
        if not sep:
            p.error(f"--{what} {item!r}: expected TASK=VALUE")
        try:
            vals = [int(v) for v in value.split(",")]
        except ValueError:
            p.error(f"--{what} {item!r}: {value!r} is not an integer (list)")
        if what == "threshold":
            out[task] = vals * depth if len(vals) == 1 else vals
        elif len(vals) != 1:
            p.error(f"--{what} {item!r}: one integer per task")
        else:
            out[task] = vals[0]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from deltamtl.model.export.bundle import BundleError, load_bundle

    p = argparse.ArgumentParser(prog="deltamtl stream", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="export bundle folder (deltamtl quant export)")
    p.add_argument("--source", required=True,
                   help="synthetic:SEED[,SEED..], camera:N, a frame folder, a .gif or a video file")
    p.add_argument("--backend", default="golden", help=f"site executor ({', '.join(BACKENDS)}, ...)")
    p.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to the backend's factory (make_executor), e.g. a bitstream path")
    p.add_argument("--keyframes", default="fixed",
                   help="K (every K frames), 'fixed' (the bundle's K and offset), 'adaptive', or 'off'")
    p.add_argument("--offset", type=int, default=None, help="keyframe offset for a fixed K")
    p.add_argument("--density-limit", type=float, default=DEFAULT_DENSITY_LIMIT,
                   help="adaptive: keyframe when the patch embedding's delta density passes this")
    p.add_argument("--max-interval", type=int, default=0, help="adaptive: keyframe at least every N frames")
    p.add_argument("--threshold", action="append", default=[], metavar="TASK=TH[,TH..]",
                   help="override a task's thresholds (one for every block, or one per block)")
    p.add_argument("--boundary", action="append", default=[], metavar="TASK=L",
                   help="override a sub-task's boundary l_k")
    p.add_argument("--resize", default="resize", choices=("resize", "crop", "none"))
    p.add_argument("--frames", type=int, default=None, help="stop after N frames (synthetic: clip length)")
    p.add_argument("--fps", type=float, default=None, help="nominal frame rate (time stamps, outputs)")
    p.add_argument("--drift", action="store_true", help="run the no-drift check (always on with --keyframes off)")
    p.add_argument("--no-video", action="store_true", help="skip the MP4/GIF/PNG (statistics only)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out", required=True, help="output folder")
    a = p.parse_args(argv)

    if a.backend not in BACKENDS:
        p.error(f"--backend {a.backend!r}: this build has {', '.join(BACKENDS)}")
    try:
        qm = load_bundle(a.bundle)
    except (BundleError, FileNotFoundError) as e:
        p.error(f"--bundle {a.bundle!r}: {e}")
    overrides = {"thresholds": _parse_task_values(p, a.threshold, "threshold", qm.depth),
                 "boundaries": _parse_task_values(p, a.boundary, "boundary", qm.depth)}
    try:
        qm = dataclasses.replace(qm, policy=override_policy(qm.policy, offset=a.offset, **overrides))
        options = {}
        for item in a.backend_option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                p.error(f"--backend-option {item!r}: expected KEY=VALUE")
            options[key] = value
        keyframes: str | int = a.keyframes
        executor = make_executor(a.backend, qm, **options) if options else None
        streamer = Streamer(qm, a.backend, keyframes, a.density_limit, a.max_interval,
                            executor=executor, drift=True if a.drift else None, resize=a.resize)
    except ValueError as e:
        p.error(str(e))
    size = int(qm.mcfg["img_size"])
    try:
        source = open_source(a.source, (size, size), frames=a.frames, fps=a.fps)
    except SourceError as e:
        p.error(str(e))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    writer = None if a.no_video else OverlayWriter(streamer.runner.tasks, streamer.num_classes,
                                                   a.fps or source.fps)
    t0 = time.perf_counter()
    # a synthetic source's --frames is its clip length (per seed), elsewhere a frame cap
    cap = None if isinstance(source, SyntheticSource) else a.frames
    streamer.run(source, max_frames=cap, progress=not a.no_progress, on_result=writer)
    wall = time.perf_counter() - t0
    drift = streamer.finish_drift()
    files = writer.write(out) if writer is not None else []
    header = {"bundle": a.bundle, "source": a.source, "backend": a.backend, "keyframes": a.keyframes,
              "tasks": ",".join(streamer.runner.tasks), "frames": len(streamer.stats.frames),
              "wall_s": round(wall, 3)}
    write_report(out, streamer, drift, files, header)
    t = streamer.stats.totals()
    print(f"stream: {t['frames']} frames in {wall:.1f} s ({t['frames'] / wall if wall else 0:.1f} frames/s), "
          f"{t['keyframes']} keyframes {t['keyframe_reasons']}, MACs saved vs dense "
          f"{t['macs_saved_vs_dense']:.1%}; report {out / 'report.md'}")
    if drift is not None:
        print(drift.markdown().strip())
        return 0 if drift.ok else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
