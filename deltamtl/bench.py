"""Benchmarks (`make bench`): speed and cost figures, written to JSON and markdown.

    deltamtl bench --out runs/bench [--quick]

Sections:
* render    synthetic video frames per second at 64x64 and 224x224
* executors site jobs per second: numpy golden core vs the C++ kernels (ctypes emulator)
* board     projected core cycles and DDR bytes per frame of the board config
            (vit-tiny-zcu104) at 300 MHz, from the analytical cycle model held to the
            RTL simulation, for lane counts 32/64/128 and a sweep of activation densities;
            base task plus three sub-tasks, with and without reference residency.
Wall-clock figures depend on the machine and its load; cycle and byte figures do not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from deltamtl.contract.atomic import atomic_write_text
from deltamtl.contract.cycle_model import cycle_breakdown
from deltamtl.contract.formats import JobFlag, Mode, choose_requant
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import CsrDelta, SiteJob
from deltamtl.contract.limits import TINY_LIMITS
from deltamtl.contract.packets import WORD_BYTES, input_sections, output_sections

CLOCK_HZ = 300e6
REPO = Path(__file__).resolve().parent.parent


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_render(quick: bool) -> dict:
    from deltamtl.model.data.synthetic import render_clip

    out = {}
    for size, frames in ((64, 16 if quick else 48), (224, 4 if quick else 12)):
        seconds = _best_of(lambda s=size, f=frames: render_clip(11, f, s, s), 2)
        out[f"{size}x{size}"] = {"frames": frames, "seconds": round(seconds, 3),
                                 "frames_per_s": round(frames / seconds, 1)}
    return out


def _random_site(rng, p: int, i: int, o: int, dw_density: float):
    w = rng.integers(-128, 128, (o, i)).astype(np.int8)
    dw = np.where(rng.random((o, i)) < dw_density, rng.integers(-8, 9, (o, i)), 0)
    dw = (np.clip(w.astype(int) + dw, -128, 127) - w).astype(np.int8)
    mult, shift = choose_requant(np.full(o, 127.0 / (128 * 128 * np.sqrt(i))))
    return w, CsrDelta.from_dense(dw), mult, shift


def _jobs_for(rng, p: int, i: int, o: int, act_density: float) -> list[SiteJob]:
    """A base keyframe, a base temporal frame, then one sub-task TASK job (resident refs)."""
    w, dw, mult, shift = _random_site(rng, p, i, o, 0.05)
    x = rng.integers(-128, 128, (p, i)).astype(np.int8)
    changed = rng.random((p, i)) < act_density
    x2 = np.where(changed, np.clip(x.astype(int) + rng.integers(-20, 21, (p, i)), -128, 127),
                  x).astype(np.int8)
    bias = rng.integers(-1000, 1000, o).astype(np.int32)
    return [
        SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, x, mult, shift, o, w=w, bias=bias),
        SiteJob(Mode.TEMPORAL, JobFlag.NONE, 1, x2, mult, shift, o),
        SiteJob(Mode.TASK, JobFlag.NONE, 1, x2, mult, shift, o, dw=dw, bias=bias // 8),
    ]


def bench_executors(quick: bool) -> dict:
    from deltamtl.hls.emulator import HlsCoreExecutor

    limits = TINY_LIMITS
    rng = np.random.default_rng(0)
    shapes = {"qkv 64x96->288": (64, 96, 288), "fc1 64x96->384": (64, 96, 384),
              "fc2 64x384->96": (64, 384, 96)}
    rounds = 3 if quick else 10
    out = {}
    for name, (p, i, o) in shapes.items():
        jobs = _jobs_for(rng, p, i, o, act_density=0.2)
        row = {}
        for label, executor in (("golden_numpy", GoldenCore(limits)),
                                ("hls_emulator", HlsCoreExecutor(limits))):
            executor.run_job(jobs[0])  # warm up (and build the library once)

            def run(ex=executor, jobs=jobs) -> None:
                for _ in range(rounds):
                    for job in jobs:
                        ex.run_job(job)

            seconds = _best_of(run, 2)
            row[label] = {"jobs_per_s": round(rounds * len(jobs) / seconds, 1)}
        out[name] = row
    return out


def _site_words(mode: Mode, flags: JobFlag, p: int, i: int, o: int, nnz_dw: int) -> int:
    n_in = sum(n for _s, n in input_sections(mode, flags, p, i, o, nnz_dw))
    n_out = sum(n for _s, n in output_sections(flags, p, i, o))
    return n_in + n_out


def bench_board(config: Path) -> dict:
    """Projected cycles/bytes per frame of the board config, base + 3 sub-tasks."""
    import torch

    from deltamtl.model.config import load_config
    from deltamtl.model.sharing.accounting import site_shapes, tokens_of
    from deltamtl.model.training.vit import build_model

    torch.manual_seed(0)
    model = build_model(load_config(config), ("semseg",))
    p = tokens_of(model)
    shapes = {name: shape for name, shape in site_shapes(model).items()
              if "patch" not in name}
    n_sub = 3
    dw_density = 0.05
    result: dict = {"config": str(config.relative_to(REPO)), "tokens": p, "sites": len(shapes),
                    "sub_tasks": n_sub, "dw_density": dw_density, "clock_hz": CLOCK_HZ,
                    "rows": []}
    for lanes in (32, 64, 128):
        for density in (1.0, 0.5, 0.25, 0.1):
            cycles_key = cycles_nonkey = 0
            bytes_resident = bytes_reload = 0
            for (in_dim, out_dim) in shapes.values():
                nnz_dw = int(round(dw_density * in_dim * out_dim))
                nnz_act = int(round(density * p * in_dim))

                def cyc(mode, flags, nnz, dw=0, i=in_dim, o=out_dim, lanes=lanes):
                    hdr = {"mode": mode, "flags": flags, "tokens": p, "in_dim": i,
                           "out_dim": o, "nnz_dw": dw, "nnz_act": max(nnz, p)}
                    return cycle_breakdown(hdr, lanes).total

                dense_all = p * in_dim
                # keyframe: base DENSE, sub-tasks TASK against it (refs resident)
                cycles_key += cyc(Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, dense_all)
                cycles_key += n_sub * cyc(Mode.TASK, JobFlag.NONE, nnz_act, nnz_dw)
                # other frames: base TEMPORAL, sub-tasks TASK (boundary at the top layer)
                cycles_nonkey += cyc(Mode.TEMPORAL, JobFlag.LOAD_W | JobFlag.LOAD_REF
                                     | JobFlag.EMIT_REF, nnz_act)
                cycles_nonkey += n_sub * cyc(Mode.TASK, JobFlag.NONE, nnz_act, nnz_dw)
                base_words = _site_words(Mode.TEMPORAL, JobFlag.LOAD_W | JobFlag.LOAD_REF
                                         | JobFlag.EMIT_REF, p, in_dim, out_dim, 0)
                task_resident = _site_words(Mode.TASK, JobFlag.NONE, p, in_dim, out_dim, nnz_dw)
                task_reload = _site_words(Mode.TASK, JobFlag.LOAD_W | JobFlag.LOAD_REF, p,
                                          in_dim, out_dim, nnz_dw)
                bytes_resident += WORD_BYTES * (base_words + n_sub * task_resident)
                bytes_reload += WORD_BYTES * (base_words + n_sub * task_reload)
            result["rows"].append({
                "lanes": lanes, "act_density": density,
                "keyframe_cycles": cycles_key, "frame_cycles": cycles_nonkey,
                "keyframe_ms": round(1e3 * cycles_key / CLOCK_HZ, 2),
                "frame_ms": round(1e3 * cycles_nonkey / CLOCK_HZ, 2),
                "stream_bytes_resident": bytes_resident,
                "stream_bytes_reload": bytes_reload,
            })
    return result


def write_report(out_dir: Path, report: dict) -> None:
    for name, text in (("bench.json", json.dumps(report, indent=2) + "\n"),
                       ("bench.md", to_markdown(report))):
        atomic_write_text(out_dir / name, text)


def to_markdown(report: dict) -> str:
    lines = ["# Benchmarks", "", f"machine: {report['machine']}", ""]
    if "render" in report:
        lines += ["## Synthetic video rendering", "", "| size | frames | s | frames/s |",
                  "|---|---|---|---|"]
        for size, row in report["render"].items():
            lines.append(f"| {size} | {row['frames']} | {row['seconds']} | {row['frames_per_s']} |")
        lines.append("")
    if "executors" in report:
        lines += ["## Site executors (DENSE, TEMPORAL, TASK jobs; activation density 0.2)", "",
                  "| site | golden numpy jobs/s | HLS C++ emulator jobs/s |", "|---|---|---|"]
        for site, row in report["executors"].items():
            lines.append(f"| {site} | {row['golden_numpy']['jobs_per_s']} | "
                         f"{row['hls_emulator']['jobs_per_s']} |")
        lines.append("")
    if "board" in report:
        b = report["board"]
        lines += [f"## Projected core time per frame: {b['config']} ({b['tokens']} tokens, "
                  f"{b['sites']} block sites, base + {b['sub_tasks']} sub-tasks, dW density "
                  f"{b['dw_density']}, {b['clock_hz'] / 1e6:.0f} MHz)", "",
                  "Cycle model of the core (checked against RTL simulation); host float ops, "
                  "DDR latency and the patch embedding are not included.", "",
                  "| lanes | activation density | keyframe ms | frame ms | stream MB/frame "
                  "(refs resident) | stream MB/frame (refs reloaded per task) |",
                  "|---|---|---|---|---|---|"]
        for r in b["rows"]:
            lines.append(f"| {r['lanes']} | {r['act_density']} | {r['keyframe_ms']} | "
                         f"{r['frame_ms']} | {r['stream_bytes_resident'] / 1e6:.2f} | "
                         f"{r['stream_bytes_reload'] / 1e6:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for tests)")
    parser.add_argument("--only", choices=["render", "executors", "board"], action="append")
    parser.add_argument("--board-config", type=Path, default=REPO / "configs" / "vit-tiny-zcu104.yaml")
    args = parser.parse_args(argv)
    sections = args.only or ["render", "executors", "board"]
    report: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                               f"Python {sys.version.split()[0]}"}
    for name in sections:
        t0 = time.perf_counter()
        print(f"bench: {name} ...", flush=True)
        if name == "render":
            report["render"] = bench_render(args.quick)
        elif name == "executors":
            report["executors"] = bench_executors(args.quick)
        else:
            report["board"] = bench_board(args.board_config)
        print(f"bench: {name} done in {time.perf_counter() - t0:.1f} s", flush=True)
    write_report(args.out, report)
    print(to_markdown(report))
    print(f"bench: wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return 0

