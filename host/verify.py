"""`deltamtl verify`: the integer pipeline checked against the model it came from.

    deltamtl verify runs/quant/bundle --config configs/tiny.yaml --frames 10 [--json FILE]

* :func:`verify` re-validates a bundle and runs the whole-video runner on a synthetic test
  clip (metrics, MACs and DDR bytes per frame);
* :func:`bitexact_clip` compares every site output of the runner with the PyTorch model
  in integer fake-quant mode, frame by frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from deltamtl.host.runner import GoldenRunner
from deltamtl.model.export.bundle import load_bundle
from deltamtl.model.export.quantized_model import QuantizedModel
from deltamtl.model.quant.quantizer import Quantizer


# ---------------------------------------------------------------------------------------
# Bit-exactness of a whole clip: golden runner vs the integer-mode torch model
# ---------------------------------------------------------------------------------------
@torch.no_grad()
def bitexact_clip(q: Quantizer, qm: QuantizedModel, frames: np.ndarray, executor: Any = None
                  ) -> dict[str, Any]:
    """Run ``frames`` (uint8 [T, H, W, 3]) through the torch model in ``int`` mode and the
    golden runner fed the torch model's int8 site inputs; compare every site output.

    Returns counts and the first mismatches as (frame, task, site). Thresholds of ``qm``
    should be 1 (lossless) for the dense torch model to be the reference in every mode.
    """
    from deltamtl.host.runner import GoldenRunner

    q.bind(qm)
    q.set_mode("int")
    runner = GoldenRunner(qm, executor, trace=True)
    compared, mismatches = 0, []
    try:
        for i, frame in enumerate(frames):
            img = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1), np.float32) / 255.0)
            with q.recording() as log:
                q.mt(img[None])
            tr = {(t, n): (x[0], y[0]) for t, n, x, y in log}
            runner.run_frame(frame, override=lambda t, n, tr=tr: tr[(t, n)][0])
            if runner.trace[i].keys() != tr.keys():
                raise RuntimeError(f"frame {i}: golden and torch ran different sites")
            for key, (_x, y) in tr.items():
                compared += 1
                if not np.array_equal(runner.trace[i][key][1], y):
                    mismatches.append((i, *key))
    finally:
        q.set_mode("float")
    modes = sorted({r.mode.name for r in runner.records})
    return {"frames": len(frames), "site_outputs_compared": compared, "mismatches": len(mismatches),
            "first_mismatches": mismatches[:10], "modes": modes, "jobs": len(runner.records)}


def verify(bundle: Path, cfg: dict, frames: int = 10, clip: int = 0, log=print) -> dict:
    """Re-validate a bundle and run the golden model on a synthetic test clip."""
    from deltamtl.model.data.datasets import synthetic_clips
    from deltamtl.model.training.metrics import make_meter

    qm = load_bundle(bundle)
    size = int(qm.mcfg["img_size"])
    d = cfg["data"]
    clips = synthetic_clips("test", clip + 1, max(frames, 1), size, size, seed=d["seed"])
    c = clips[clip]
    runner = GoldenRunner(qm)
    t0 = time.perf_counter()
    outs = runner.run_clip(c.rgb[:frames])
    dt = time.perf_counter() - t0
    meters: dict[str, Any] = {}
    for i, out in enumerate(outs):
        for t, y in out.items():
            if not np.all(np.isfinite(y)):
                raise ValueError(f"{bundle}: golden output of {t} at frame {i} is not finite")
            pred, target = _metric_inputs(t, y, c, i)
            if t not in meters:
                meters[t] = make_meter(t, num_classes=int(qm.mcfg["num_classes"])) if t == "semseg" else make_meter(t)
            meters[t].update(pred, target)
    n = len(outs)
    tot = runner.totals()
    result = {"bundle": str(bundle), "frames": n, "seconds": dt, "resident_savings": runner.resident_savings(),
              "metrics": {t: {k: float(v) for k, v in m.compute().items()} for t, m in meters.items()},
              "per_frame": {t: {k: v / n for k, v in tv.items()} for t, tv in tot.items()}}
    log(f"[verify] {bundle}: valid; golden ran {n} frames x {len(qm.tasks)} tasks in {dt:.2f} s "
        f"({len(runner.records)} site jobs)")
    sv = result["resident_savings"]
    log(f"[verify]   DDR read {sv['bytes_read'] / n:.0f} B/frame with resident base refs, "
        f"{sv['bytes_read_without_residency'] / n:.0f} B/frame if every task loaded its own")
    for t in qm.tasks:
        pf = result["per_frame"][t]
        log(f"[verify]   {t:8s} MACs/frame {pf['macs']:12.0f}  DDR read {pf['bytes_read']:10.0f} B  "
            f"written {pf['bytes_written']:10.0f} B  metrics {json.dumps({k: round(v, 4) for k, v in result['metrics'][t].items()})}")
    return result


def _metric_inputs(task: str, y: np.ndarray, clip: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Golden head output [C, H, W] -> (prediction, target) in the meters' conventions."""
    if task == "semseg":
        return y.argmax(axis=0)[None].astype(np.int64), clip.semseg[i][None].astype(np.int64)
    if task == "depth":
        return (y[0] * 1000.0)[None], clip.depth[i][None].astype(np.float32)
    if task == "normals":
        n = y / np.maximum(np.linalg.norm(y, axis=0, keepdims=True), 1e-6)
        return n.transpose(1, 2, 0)[None], clip.normals[i][None].astype(np.float32)
    if task == "edges":
        return (1.0 / (1.0 + np.exp(-y[0])))[None], clip.edges[i][None].astype(np.uint8)
    raise ValueError(f"unknown task {task!r}")


def main(argv: Sequence[str] | None = None) -> int:
    from deltamtl.contract.atomic import atomic_write_text
    from deltamtl.model.config import load_config
    from deltamtl.model.export.bundle import BundleError

    p = argparse.ArgumentParser(prog="deltamtl verify",
                                description="validate a bundle and run the golden model on a clip")
    p.add_argument("bundle")
    p.add_argument("--config", default="configs/tiny.yaml")
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--clip", type=int, default=0)
    p.add_argument("--json", default=None, help="write the result here")
    args = p.parse_args(argv)
    try:
        res = verify(Path(args.bundle), load_config(args.config), args.frames, args.clip)
    except (BundleError, FileNotFoundError, ValueError) as exc:
        print(f"deltamtl verify: {exc}", file=sys.stderr)
        return 1
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(res, indent=1, default=float))
    return 0
