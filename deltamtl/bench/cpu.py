"""Section 5, emulation and CPU: frames/s of the backends streaming the 4-task clip, and the
wall time of the best CPU delta path against dense PyTorch on the same model and clip.

Frames/s: the whole-video runner (``GoldenRunner``, the streaming core: one frame at a
time, keyframe every K, every task) over a synthetic clip at the model's size, on the
``golden`` (numpy) and ``emulated`` (C++ kernels through ctypes, fetch -> core -> commit
over a DDR buffer per job) backends; the wall time splits into the executor's share and
the host float ops' (a timing wrapper around the executor). The median of repeated runs in
this process; the first run of each backend is a warm-up (library load, caches) and is
discarded.

CPU paths, same model (float for PyTorch, int8 for the runners) and same clip:

* **dense PyTorch**: the base and each sub-task with merged weights (W_b + dW), every frame
  and every task a full forward pass, batch 1, the way a video arrives;
* **delta paths**: the golden runner, the emulated runner (both int8, the bundle's
  policy), and the float threshold-reuse engine with gather-multiply-scatter sparse
  products (``ReuseEngine(sparse_exec=True)``, model/sharing/reuse.py) under the same
  thresholds and boundaries. The best of them is compared with dense PyTorch.

PyTorch runs with one intra-op thread (``THREADS``), like the numpy golden core, and the
dense and reuse runs alternate so that load from other processes hits both alike. Timings
depend on the machine and its load (the bench records the load average); MAC counts do not.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import numpy as np
from deltamtl.host.backends import make_executor
from deltamtl.host.runner import GoldenRunner
from deltamtl.host.stream import TimedExecutor  # wall time inside run_job
from deltamtl.model.export.quantized_model import QuantizedModel

# One intra-op thread for PyTorch, as numpy's golden core has: on the shared 2-core machine
# two OpenMP threads stall on each other's barriers whenever another process holds a core
# (the same dense run measured 0.15 s to 14 s with two threads).
THREADS = 1


def _median_runs(fn: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up, discarded
    times = [fn() for _ in range(repeats)]
    return statistics.median(times), times


def backend_fps(qm: QuantizedModel, frames: np.ndarray, backend: str, repeats: int) -> dict:
    """Frames/s of the runner on ``backend`` streaming ``frames`` (median of ``repeats``)."""
    ex = TimedExecutor(make_executor(backend, qm))
    runner = GoldenRunner(qm, ex)
    split: list[tuple[float, float]] = []

    def once() -> float:
        ex.seconds = 0.0
        runner.records.clear()  # one run's accounting (and no growth over repeats)
        t0 = time.perf_counter()
        runner.run_clip(frames)
        wall = time.perf_counter() - t0
        split.append((wall, ex.seconds))
        return wall

    med, times = _median_runs(once, repeats)
    kept = split[1:]
    exec_share = statistics.median(e / w for w, e in kept)
    return {"backend": backend, "frames": len(frames), "repeats": repeats,
            "seconds_median": med, "seconds_all": times, "frames_per_s": len(frames) / med,
            "executor_share": exec_share, "jobs_per_frame": len(runner.records) / len(frames)}


def _torch_models(cfg: dict):
    import torch
    from deltamtl.model.sharing.report import load_subtasks
    from deltamtl.model.sharing.train_steps import load_base

    base = load_base(cfg, torch.device("cpu")).eval()
    subs = load_subtasks(cfg, base, 3)
    return base, subs


def cpu_paths(qm: QuantizedModel, cfg: dict | None, selection: dict, frames: np.ndarray,
              repeats: int, runner_fps: dict[str, dict]) -> dict:
    """Dense PyTorch against the delta paths on the same clip (module docstring)."""
    if cfg is None:
        return {"skipped": "the model's float checkpoints are not known to the bench (a found "
                           "bundle): dense PyTorch and the float reuse engine need them"}
    import torch
    from deltamtl.model.sharing.reuse import Policy as FloatPolicy
    from deltamtl.model.sharing.reuse import ReuseEngine
    from deltamtl.model.sharing.subtasks import detach_deltas

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        base, subs = _torch_models(cfg)
        merged = {}
        for t, m in subs.items():
            mm = copy.deepcopy(m)
            with torch.no_grad():
                detach_deltas(mm)
            merged[t] = mm.eval()
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)

        @torch.no_grad()
        def dense() -> float:
            t0 = time.perf_counter()
            for i in range(x.shape[0]):
                img = x[i:i + 1]
                base(img, task="semseg")
                for m in merged.values():
                    m(img)
            return time.perf_counter() - t0

        depth = len(base.encoder.blocks)
        policy = FloatPolicy(depth=depth, keyframe_interval=int(qm.policy.keyframe_interval),
                             thresholds={t: [float(v) for v in ths]
                                         for t, ths in selection.get("thresholds", {}).items()},
                             boundaries={t: int(b) for t, b in selection.get("boundaries", {}).items()})

        @torch.no_grad()
        def reuse_sparse() -> float:
            t0 = time.perf_counter()
            with ReuseEngine(base, subs, policy, count_dense_extras=False, sparse_exec=True) as eng:
                for _ in eng.run_clip([x[i:i + 1] for i in range(x.shape[0])]):
                    pass
            return time.perf_counter() - t0

        # interleaved, so a burst of load from other processes hits both paths alike
        dense()
        reuse_sparse()  # warm-ups, discarded
        dense_all, reuse_all = [], []
        for _ in range(repeats):
            dense_all.append(dense())
            reuse_all.append(reuse_sparse())
        dense_med, reuse_med = statistics.median(dense_all), statistics.median(reuse_all)
    finally:
        torch.set_num_threads(threads)
    paths = {"float reuse engine (sparse gather-scatter)": reuse_med}
    for name, row in runner_fps.items():
        paths[f"{name} runner (int8)"] = row["seconds_median"]
    best = min(paths, key=lambda k: paths[k])
    return {"frames": len(frames), "repeats": repeats, "torch_threads": THREADS,
            "dense_pytorch_seconds": dense_med, "dense_pytorch_all": dense_all,
            "dense_pytorch_frames_per_s": len(frames) / dense_med,
            "delta_paths_seconds": paths, "reuse_engine_all": reuse_all,
            "best_delta_path": best, "best_over_dense_wall_ratio": paths[best] / dense_med}


def stream_plugin(qm: QuantizedModel, frames: np.ndarray, backends: tuple[str, ...]) -> dict:
    """Frames/s of ``deltamtl stream``'s pipeline (sources, scheduler, statistics around the
    runner) on each backend, keyframes at the bundle's interval."""
    from deltamtl.host.sources import ArraySource
    from deltamtl.host.stream import Streamer

    out: dict = {"available": True}
    for b in backends:
        st = Streamer(qm, backend=b, keyframes=int(qm.policy.keyframe_interval))
        totals = st.run(ArraySource(frames)).totals()
        out[b] = {"frames": totals["frames"], "frames_per_s": totals["frames_per_s"],
                  "register_accesses": totals.get("register_accesses")}
    return out


def driver_plugin(qm: QuantizedModel, frames: np.ndarray) -> dict:
    """Register accesses per frame of the PYNQ driver on the virtual ZCU104 (one chained
    launch per frame, docs/host.md), counted by the driver itself."""
    ex = make_executor("virtual", qm)
    runner = GoldenRunner(qm, ex)
    counts = []
    for f in frames:
        before = ex.register_accesses
        runner.run_frame(f)
        counts.append(ex.register_accesses - before)
    steady = counts[1:] or counts
    return {"available": True, "per_frame": counts, "first_frame": counts[0],
            "steady_per_frame": float(np.mean(steady)), "frames": len(frames)}
