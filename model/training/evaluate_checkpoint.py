"""`deltamtl evaluate`: score a training checkpoint on held-out clips, against trivial baselines.

    deltamtl evaluate --ckpt runs/st_semseg/last.pt [--split val] [--out FILE.json]

The model is rebuilt through the checkpoint's recipe (so this sits above the recipes); the
metrics and baselines come from :mod:`deltamtl.model.training.evaluate`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from deltamtl.contract.atomic import atomic_write_text
from deltamtl.model.checkpoint import CheckpointError, json_safe, load_checkpoint, load_model_state
from deltamtl.model.config import ConfigError
from deltamtl.model.training.evaluate import (
    acceptance,
    baseline_stats,
    evaluate_baselines,
    evaluate_model,
    format_report,
)
from torch import nn


def load_trained_model(ckpt_path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict, Any]:
    """Rebuild the model of a training checkpoint through its recipe; returns (model, ckpt, recipe)."""
    from deltamtl.model.training.recipe import RecipeArgs, make_recipe

    ckpt = load_checkpoint(ckpt_path, map_location=device)
    recipe = make_recipe(ckpt["recipe"], RecipeArgs(ckpt["config"], ckpt.get("task"), None, torch.device(device)))
    model = recipe.build_model().to(device)
    load_model_state(model, ckpt["model"], ckpt_path)
    recipe.load_state_dict(ckpt.get("recipe_state", {}))
    model.eval()
    return model, ckpt, recipe


def evaluate_checkpoint(ckpt_path: str | Path, split: str | None = None, batch_size: int | None = None,
                        device: str = "cpu", overrides: Sequence[str] = ()) -> dict:
    """Everything the CLI prints, as a dict (also what it writes as JSON).

    ``overrides`` (``data.test_clips=32``, ...) change the checkpoint's ``data``/``eval``
    sections for this evaluation only, e.g. to score on more held-out clips.
    """
    from deltamtl.model.config import ConfigError, apply_overrides, validate_sections
    from deltamtl.model.training.recipe import synthetic_split

    model, ckpt, recipe = load_trained_model(ckpt_path, device)
    cfg = ckpt["config"]
    if overrides:
        bad = [o for o in overrides if not o.split("=", 1)[0].startswith(("data.", "eval."))]
        if bad:
            raise ConfigError(f"{ckpt_path}: override {bad[0]!r}: only data.* and eval.* keys can change at evaluation")
        # keys must exist; only the changed sections are re-validated, so checkpoints of
        # older configs still load
        cfg = apply_overrides(cfg, overrides, source=f"{ckpt_path} (override)")
        validate_sections(cfg, ("data", "eval"), f"{ckpt_path} (override)")
    split = split or cfg["eval"]["split"]
    bs = batch_size or int(cfg["eval"]["batch_size"])
    dataset = synthetic_split(cfg, split)
    tasks = tuple(ckpt["tasks"])
    model_metrics = recipe.evaluate(model, dataset) if batch_size is None else \
        evaluate_model(model, dataset, tasks, batch_size=bs)
    stats = baseline_stats(synthetic_split(cfg, "train"), tasks)
    base_metrics = evaluate_baselines(stats, dataset, tasks, batch_size=bs)
    return {
        "checkpoint": str(ckpt_path), "recipe": ckpt["recipe"], "step": int(ckpt["step"]), "split": split,
        "overrides": list(overrides),
        "n_images": len(dataset), "tasks": list(tasks), "model": model_metrics, "baselines": base_metrics,
        "baseline_stats": stats, "acceptance": acceptance(model_metrics, base_metrics),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="deltamtl evaluate", description="Evaluate a checkpoint.")
    p.add_argument("--ckpt", required=True, help="checkpoint written by deltamtl.model.training.train")
    p.add_argument("--split", default=None, choices=("train", "val", "test"), help="default: config eval.split")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON path (default: <ckpt dir>/eval_<split>.json)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change data.*/eval.* of the checkpoint's config, e.g. data.test_clips=32")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    try:
        result = evaluate_checkpoint(args.ckpt, args.split, args.batch_size, overrides=args.overrides)
    except (CheckpointError, ConfigError) as exc:
        print(f"deltamtl evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(f"checkpoint {result['checkpoint']} (recipe {result['recipe']}, step {result['step']}), "
          f"split {result['split']} ({result['n_images']} images)")
    print(format_report(result["model"], result["baselines"], result["acceptance"]))
    suffix = "" if not args.overrides else "_" + "_".join(o.split(".")[-1].replace("=", "") for o in args.overrides)
    out = Path(args.out) if args.out else Path(args.ckpt).parent / f"eval_{result['split']}{suffix}.json"
    atomic_write_text(out, json.dumps(json_safe(result), indent=2, allow_nan=False) + "\n")
    print(f"wrote {out}")
    return 0
