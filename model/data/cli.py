"""Command line for the data package.

    deltamtl data bench   [--sizes 64 224] [--frames 30] [--clips 3]
    deltamtl data preview --out preview.png [--seed 0] [--size 128] [--frames 4]
    deltamtl data export  --root DIR [--split train] [--clips 2] [--frames 8]
                                          [--size 64] [--seed 0]

bench: rendering speed, frames per wall-clock second and per CPU second (median over clips).
preview: a grid, one row per frame: RGB, classes, depth, normals, edges.
export: write a synthetic split in the NYUD-v2 multi-task layout (readable by NYUDDataset).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _bench(sizes, frames, clips) -> dict:
    from .synthetic import render_clip

    render_clip(0, 1, 8, 8)  # build the texture bank outside the timing
    out = {}
    for s in sizes:
        fps, cpu_fps = [], []
        for c in range(clips):
            t0, c0 = time.perf_counter(), time.process_time()
            render_clip(1000 + c, frames, s, s)
            fps.append(frames / (time.perf_counter() - t0))
            cpu_fps.append(frames / max(time.process_time() - c0, 1e-9))
        # wall-clock figures depend on what else runs; frames per CPU-second do not (much)
        out[f"{s}x{s}"] = {"median_fps": round(float(np.median(fps)), 1),
                           "median_fps_per_cpu_second": round(float(np.median(cpu_fps)), 1)}
    return out


def _colour_labels(lab: np.ndarray) -> np.ndarray:
    pal = np.array([[140, 100, 60], [200, 200, 180], [240, 240, 255], [220, 60, 60], [60, 160, 220],
                    [80, 200, 80], [200, 160, 40], [180, 80, 200]] + [[0, 0, 0]] * 248, np.uint8)
    return pal[lab]


def preview(seed: int, size: int, frames: int) -> np.ndarray:
    from .synthetic import render_clip

    c = render_clip(seed, frames, size, size)
    rows = []
    for t in range(frames):
        d = c.depth[t]
        dn = (255 * (1 - (d - d.min()) / max(np.ptp(d), 1e-6))).astype(np.uint8)
        rows.append(np.concatenate([
            c.rgb[t], _colour_labels(c.semseg[t]), np.repeat(dn[..., None], 3, 2),
            np.clip((c.normals[t] * np.array([1, -1, -1]) + 1) * 127.5, 0, 255).astype(np.uint8),
            np.repeat(c.edges[t][..., None] * 255, 3, 2).astype(np.uint8)], axis=1))
    return np.concatenate(rows, axis=0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="deltamtl data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    b.add_argument("--frames", type=int, default=30)
    b.add_argument("--clips", type=int, default=3)
    p = sub.add_parser("preview")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--frames", type=int, default=4)
    e = sub.add_parser("export")
    e.add_argument("--root", required=True)
    e.add_argument("--split", default="train")
    e.add_argument("--clips", type=int, default=2)
    e.add_argument("--frames", type=int, default=8)
    e.add_argument("--size", type=int, default=64)
    e.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.cmd == "bench":
        print(json.dumps(_bench(a.sizes, a.frames, a.clips)))
    elif a.cmd == "preview":
        from PIL import Image

        Image.fromarray(preview(a.seed, a.size, a.frames)).save(a.out)
        print(a.out)
    else:
        from .datasets import clip_seed, synthetic_clips
        from .nyud import save_clip_nyud

        clips = synthetic_clips(a.split, a.clips, a.frames, a.size, a.size, a.seed)
        for i, c in enumerate(clips):
            save_clip_nyud(c, a.root, f"{a.split}_{clip_seed(a.split, a.seed, i)}", split=a.split)
        print(json.dumps({"root": a.root, "split": a.split, "frames": a.clips * a.frames}))
    return 0

