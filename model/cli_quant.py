"""`deltamtl quant`: quantise, export, inspect and verify a bundle of the multi-task model.

    deltamtl quant quantise --config configs/tiny.yaml --out runs/quant   # + accuracy.json
    deltamtl quant export   --config configs/tiny.yaml --out runs/quant/bundle [--onnx DIR]
    deltamtl quant inspect  runs/quant/bundle
    deltamtl quant verify   runs/quant/bundle --config configs/tiny.yaml --frames 10

The trained model is the config's ``sharing.base_checkpoint`` plus the step-3 sub-task
checkpoints (``sharing.quant.sub_checkpoint``); ``--qat CKPT`` takes a QAT checkpoint of
``recipe_qat`` instead (its calibrated scales included); ``--random SEED`` quantises a small
random model (no training needed). Thresholds and boundaries come from the sharing report
(``--report``, default ``{out_root}/report.json``) when it exists, else th = 1 (lossless).
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
from deltamtl.model.export import bundle_summary, format_summary, load_bundle, write_bundle
from deltamtl.model.golden import GoldenRunner
from deltamtl.model.quant import (
    QAT_DEFAULTS,
    Quantizer,
    calibration_batches,
    compare_accuracy,
    qat_value,
    random_multitask,
    trained_multitask,
)

DEFAULT_CONFIG = "configs/tiny.yaml"


def _atomic_json(path: Path, obj: Any) -> None:
    from deltamtl.model.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, default=float))


def float_policy(cfg: dict, report: str | Path | None) -> Any | None:
    """The float reuse policy from the sharing report (thresholds, boundaries), if any."""
    from deltamtl.model.reuse import Policy
    from deltamtl.model.sharing_train import sharing_value

    path = Path(report) if report else Path(sharing_value(cfg, "out_root")) / "report.json"
    if not path.is_file():
        return None
    rep = json.loads(path.read_text())
    depth = int(cfg["model"]["depth"])
    for task, ths in rep.get("thresholds", {}).items():
        if len(ths) != depth:
            raise ValueError(f"{path}: thresholds.{task} has {len(ths)} per-block values, the model "
                             f"(model.depth) has {depth} blocks; pass --report for this model")
    return Policy(depth=depth, keyframe_interval=int((cfg.get("sharing") or {}).get("keyframe_interval", 5)),
                  thresholds={t: [float(v) for v in ths] for t, ths in rep.get("thresholds", {}).items()},
                  boundaries={t: int(b) for t, b in rep.get("boundaries", {}).items()})


def build_quantizer(cfg: dict, qat: str | None = None, random_seed: int | None = None,
                    calib_batches: int | None = None, require_subtasks: bool = True) -> Quantizer:
    """A calibrated quantiser over the trained (or QAT, or random) multi-task model.

    Sub-task checkpoints: ``sharing.quant.sub_checkpoints`` {task: path} overrides the
    ``sharing.quant.sub_checkpoint`` template per task.
    """
    torch.manual_seed(0)
    if qat:
        from deltamtl.model.checkpoint import load_checkpoint
        from deltamtl.model.recipe import RecipeArgs, make_recipe

        ckpt = load_checkpoint(qat)
        if ckpt["recipe"] not in ("qat", "deltamtl.model.quant:recipe_qat"):
            raise ValueError(f"{qat}: written by recipe {ckpt['recipe']!r}, not the QAT recipe")
        recipe = make_recipe("deltamtl.model.quant:recipe_qat", RecipeArgs(ckpt["config"]))
        model = recipe.build_model()
        model.load_state_dict(ckpt["model"])
        recipe.load_state_dict(ckpt["recipe_state"])
        q = recipe.quantizer
        q.set_mode("float")
        return q
    if random_seed is not None:
        from deltamtl.model.quant import SMALL_MODEL

        mcfg = dict(SMALL_MODEL, img_size=cfg["model"]["img_size"], patch_size=cfg["model"]["patch_size"],
                    num_classes=cfg["model"]["num_classes"])
        mt = random_multitask(random_seed, mcfg)
    else:
        mt = trained_multitask(cfg, require_subtasks, log=lambda m: print(f"[quant] {m}", file=sys.stderr),
                               sub_paths=qat_value(cfg, "sub_checkpoints"))
    q = Quantizer(mt, percentile=float(qat_value(cfg, "calib_percentile")))
    n = calib_batches if calib_batches is not None else int(qat_value(cfg, "calib_batches"))
    q.calibrate(calibration_batches(cfg, n))
    return q


def quantise(cfg: dict, bundle_path: Path, qat: str | None = None, random_seed: int | None = None,
             report: str | None = None, accuracy: bool = True, key_offset: int = 0,
             report_json: Path | None = None, require_subtasks: bool = True,
             onnx_dir: Path | None = None, log=print) -> dict:
    """Quantise, (optionally) compare accuracy on the eval split, write the bundle (and the
    float ONNX graphs of the same model when ``onnx_dir`` is given)."""
    from deltamtl.model.recipe import synthetic_split

    t0 = time.perf_counter()
    q = build_quantizer(cfg, qat, random_seed, require_subtasks=require_subtasks)
    # a random model has no sharing report of its own: only an explicit --report applies
    policy = float_policy(cfg, report) if (report or random_seed is None) else None
    k = int((cfg.get("sharing") or {}).get("keyframe_interval", 5))
    qm = q.to_quantized(policy, keyframe_interval=k, key_offset=key_offset)
    result: dict[str, Any] = {"source": qat or ("random" if random_seed is not None else "trained"),
                              "tasks": list(qm.tasks), "policy_from_report": policy is not None}
    if accuracy:
        q.bind(qm)
        acc = compare_accuracy(q, synthetic_split(cfg, cfg["eval"]["split"]),
                               batch_size=int(cfg["eval"]["batch_size"]))
        result["accuracy"] = acc
        for t, a in acc.items():
            log(f"[quant] {t:8s} {a['metric']:9s} float {a['float']:.4f}  int8 {a['quant']:.4f}  "
                f"worse by {100 * a['worse_rel']:+.2f}%  {'PASS' if a['pass'] else 'FAIL'} (<= 2%)")
    bundle = write_bundle(qm, bundle_path, extra={"source": result["source"]})
    result["bundle"] = str(bundle)
    if onnx_dir is not None:
        from deltamtl.model.onnx_export import OPSET, export_onnx

        q.remove()  # the float model
        result["onnx"] = {t: str(p) for t, p in export_onnx(q.mt, Path(onnx_dir)).items()}
        result["onnx_opset"] = OPSET
    result["seconds"] = time.perf_counter() - t0
    if report_json is not None:
        _atomic_json(report_json, result)
    return result


def verify(bundle: Path, cfg: dict, frames: int = 10, clip: int = 0, log=print) -> dict:
    """Re-validate a bundle and run the golden model on a synthetic test clip."""
    from deltamtl.model.data.datasets import synthetic_clips
    from deltamtl.model.metrics import make_meter

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


def run_quant_export_demo(out_dir: Path, config: str | Path = DEFAULT_CONFIG) -> dict:
    """`make demo` step: quantise + export the trained model, print the bundle summary.

    Uses the checkpoints named by the config: the base and every step-3 sub-task present
    (missing sub-tasks are named on stderr and left out). Without even a base checkpoint
    it says so and quantises a small random model, so the step never silently fakes.
    """
    from deltamtl.model.config import load_config

    cfg = load_config(config)
    out_dir = Path(out_dir)
    try:
        res = quantise(cfg, out_dir / "bundle", accuracy=True, report_json=out_dir / "quant_report.json",
                       require_subtasks=False)
    except FileNotFoundError as exc:
        print(f"[quant] {exc}; quantising a random model instead", file=sys.stderr)
        res = quantise(cfg, out_dir / "bundle", random_seed=0, accuracy=False,
                       report_json=out_dir / "quant_report.json")
    summary = bundle_summary(res["bundle"])
    print(format_summary(summary))
    res["summary"] = {k: summary[k] for k in ("n_sites", "total_bytes", "storage_bytes", "dw", "core_limits")}
    return res


# ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deltamtl quant", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", default=DEFAULT_CONFIG)
        sp.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
        src = sp.add_mutually_exclusive_group()
        src.add_argument("--qat", default=None, help="QAT checkpoint (recipe_qat) to quantise")
        src.add_argument("--random", type=int, default=None, metavar="SEED",
                         help="quantise a small random model instead of the trained one")
        sp.add_argument("--report", default=None, help="sharing report.json (thresholds, boundaries)")
        sp.add_argument("--key-offset", type=int, default=0, help="keyframe offset in [0, K)")
        sp.add_argument("--sub", action="append", default=[], metavar="TASK=CKPT",
                        help="checkpoint of one sub-task (repeatable; default: the config's template)")
        sp.add_argument("--allow-missing-subtasks", action="store_true",
                        help="quantise the base and whichever sub-task checkpoints exist")
        sp.add_argument("--out", required=True)

    q = sub.add_parser("quantise", help="calibrate, compare accuracy with float, write bundle")
    model_args(q)
    e = sub.add_parser("export", help="write the bundle (no accuracy run)")
    model_args(e)
    e.add_argument("--onnx", default=None, help="also export float ONNX models per task here")
    i = sub.add_parser("inspect", help="print a bundle's summary")
    i.add_argument("bundle")
    i.add_argument("--json", action="store_true")
    v = sub.add_parser("verify", help="validate a bundle and run the golden model on a clip")
    v.add_argument("bundle")
    v.add_argument("--config", default=DEFAULT_CONFIG)
    v.add_argument("--frames", type=int, default=10)
    v.add_argument("--clip", type=int, default=0)
    v.add_argument("--json", default=None, help="write the result here")
    p.epilog = f"QAT/calibration defaults: {QAT_DEFAULTS}"
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from deltamtl.model.config import load_config
    from deltamtl.model.export import BundleError

    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    try:
        if args.cmd in ("quantise", "export"):
            cfg = load_config(args.config, args.overrides)
            subs = dict(item.split("=", 1) for item in args.sub if "=" in item)
            if len(subs) != len(args.sub):
                raise ValueError(f"--sub expects TASK=CKPT, got {args.sub}")
            if subs:
                quant_cfg = cfg.setdefault("sharing", {}).setdefault("quant", {})
                quant_cfg["sub_checkpoints"] = {**(quant_cfg.get("sub_checkpoints") or {}), **subs}
            out = Path(args.out)
            if args.cmd == "quantise":
                res = quantise(cfg, out / "bundle", args.qat, args.random, args.report, True,
                               args.key_offset, report_json=out / "quant_report.json",
                               require_subtasks=not args.allow_missing_subtasks)
            else:
                res = quantise(cfg, out, args.qat, args.random, args.report, False, args.key_offset,
                               require_subtasks=not args.allow_missing_subtasks,
                               onnx_dir=Path(args.onnx) if args.onnx else None)
            print(json.dumps({k: v for k, v in res.items() if k != "accuracy"}, default=float))
        elif args.cmd == "inspect":
            s = bundle_summary(args.bundle)
            print(json.dumps(s, indent=1, default=float) if args.json else format_summary(s))
        elif args.cmd == "verify":
            res = verify(Path(args.bundle), load_config(args.config), args.frames, args.clip)
            if args.json:
                _atomic_json(Path(args.json), res)
    except (BundleError, FileNotFoundError, ValueError) as exc:
        print(f"deltamtl quant {args.cmd}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
