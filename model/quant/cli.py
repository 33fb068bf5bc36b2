"""`deltamtl quant`: quantise, export and inspect a bundle of the multi-task model.

    deltamtl quant quantise --config configs/tiny.yaml --out runs/quant   # + accuracy.json
    deltamtl quant export   --config configs/tiny.yaml --out runs/quant/bundle [--onnx DIR]
    deltamtl quant inspect  runs/quant/bundle

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

import torch
from deltamtl.model.export.bundle import bundle_summary, format_summary, write_bundle
from deltamtl.model.quant.accuracy import compare_accuracy
from deltamtl.model.quant.assemble import (
    QAT_DEFAULTS,
    qat_value,
    random_multitask,
    trained_multitask,
)
from deltamtl.model.quant.qat import calibration_batches
from deltamtl.model.quant.quantizer import Quantizer

DEFAULT_CONFIG = "configs/tiny.yaml"


def _atomic_json(path: Path, obj: Any) -> None:
    from deltamtl.contract.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, default=float))


def float_policy(cfg: dict, report: str | Path | None) -> Any | None:
    """The float reuse policy from the sharing report (thresholds, boundaries), if any."""
    from deltamtl.model.sharing.reuse import Policy
    from deltamtl.model.sharing.train_steps import sharing_value

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
        from deltamtl.model.checkpoint import load_checkpoint, load_model_state
        from deltamtl.model.training.recipe import RecipeArgs, make_recipe

        ckpt = load_checkpoint(qat)
        if ckpt["recipe"] not in ("qat", "deltamtl.model.quant.qat:recipe_qat"):
            raise ValueError(f"{qat}: written by recipe {ckpt['recipe']!r}, not the QAT recipe")
        recipe = make_recipe("deltamtl.model.quant.qat:recipe_qat", RecipeArgs(ckpt["config"]))
        model = recipe.build_model()
        load_model_state(model, ckpt["model"], qat)
        recipe.load_state_dict(ckpt["recipe_state"])
        q = recipe.quantizer
        q.set_mode("float")
        return q
    if random_seed is not None:
        from deltamtl.model.quant.assemble import SMALL_MODEL

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
    from deltamtl.model.training.recipe import synthetic_split

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
        from deltamtl.model.export.onnx_graph import OPSET, export_onnx

        q.remove()  # the float model
        result["onnx"] = {t: str(p) for t, p in export_onnx(q.mt, Path(onnx_dir)).items()}
        result["onnx_opset"] = OPSET
    result["seconds"] = time.perf_counter() - t0
    if report_json is not None:
        _atomic_json(report_json, result)
    return result






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
    p.epilog = f"QAT/calibration defaults: {QAT_DEFAULTS}"
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from deltamtl.model.config import load_config
    from deltamtl.model.export.bundle import BundleError

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
    except (BundleError, FileNotFoundError, ValueError) as exc:
        print(f"deltamtl quant {args.cmd}: {exc}", file=sys.stderr)
        return 1
    return 0

