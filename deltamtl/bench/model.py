"""The models the bench measures: a trained 4-task bundle found on disk, or one trained here.

Two models, because two questions need different sizes:

* the **headline model** answers "what do real frames cost": densities, MACs, frames/s of
  the CPU backends and the board projection's densities. It is ``runs/quant/bundle``
  (``make quant``) or ``runs/demo/bundle`` when either holds four tasks and thresholds;
  otherwise the bench
  trains one through the real chain (base task, sharing steps 1-3 for the three sub-tasks,
  threshold selection, quantisation, export) at the ``tiny`` config's real size (64x64
  frames, 6 blocks of width 96) with a short schedule. ``--quick`` trains the engine model's
  size instead (seconds).
* the **engine model** is small enough for the CI build of the RTL core (``CI_LIMITS``:
  24 tokens, widths up to 64), so a few frames of its site jobs replay on Verilator in
  about a minute. It is always trained here (a few seconds), the way
  tests/system/test_end_to_end.py trains its model.

Thresholds are chosen the way ``deltamtl sharing-report`` chooses them (``select_thresholds``:
the largest level of the config's ``threshold_grid`` whose cost against the same model run
densely stays within ``threshold_margin``), on the bench model's own validation clips, and
the boundaries are the MAC-minimising ones measured under them. Both go into the bundle's
reuse policy through ``quantise(report=...)``, as ``make quant`` does with the sharing report.

A model trained here is cached under ``<out>/model/<name>/`` with the recipe that made it
(``recipe.json``); a later run with the same recipe reuses it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deltamtl.contract.atomic import atomic_write_text
from deltamtl.model.export.quantized_model import QuantizedModel
from deltamtl.model.tasks import BASE_TASK, SUB_TASKS

REPO = Path(__file__).resolve().parents[2]
TINY_CONFIG = "configs/tiny.yaml"
FOUND_BUNDLES = ("runs/quant/bundle", "runs/demo/bundle")  # `make quant`, `make demo`

# The engine model: every site fits CI_LIMITS (16 tokens <= 24; qkv 16 -> 48 is 768 weights,
# fc1 16 -> 32: widths <= 64). The same reduced shape as tests/system/test_end_to_end.py.
ENGINE_MODEL = ["model.img_size=16", "model.patch_size=4", "model.embed_dim=16",
                "model.depth=2", "model.num_heads=2", "model.mlp_ratio=2.0",
                "model.head_channels=4"]
# gates start half-open and move slowly (test_end_to_end explains why); a cap per sub-task
# keeps dW sparse whatever the short step 1 left open
ENGINE_SHARING = ["sharing.hard_concrete.log_alpha_init=1.0", "sharing.lr_log_alpha=0.05",
                  "sharing.lambda_w=1e-6", "sharing.lr_step1=1e-2", "sharing.max_delta_nnz=400"]


@dataclass(frozen=True)
class Recipe:
    """How a bench model is trained: config, overrides, schedule. Its JSON is the cache key."""

    name: str
    config: str
    overrides: tuple[str, ...]
    base_steps: int
    step_steps: tuple[int, int, int]  # sharing steps 1, 2, 3
    val_clips: int  # clips for threshold selection
    threshold_grid: tuple[float, ...]
    calib_batches: int = 2

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config, "overrides": list(self.overrides),
                "base_steps": self.base_steps, "step_steps": list(self.step_steps),
                "val_clips": self.val_clips, "threshold_grid": list(self.threshold_grid),
                "calib_batches": self.calib_batches}

    def command(self) -> str:
        """The equivalent command lines (what a reader would type to redo it)."""
        sets = " ".join(f"--set {o}" for o in self.overrides)
        return (f"deltamtl train --config {self.config} --recipe st --task semseg "
                f"--steps {self.base_steps} {sets}; deltamtl sharing-train --config {self.config} "
                f"(steps {'/'.join(map(str, self.step_steps))}) {sets}; threshold selection on "
                f"{self.val_clips} val clips; deltamtl quant quantise")


def engine_recipe(quick: bool = False) -> Recipe:
    """The engine model; ``quick`` (CI) cuts the schedule to seconds: the figures then
    check the plumbing, not the model."""
    overrides = tuple(ENGINE_MODEL + ENGINE_SHARING + [
        "data.train_clips=8", "data.val_clips=2", "data.test_clips=2", "data.frames_per_clip=8",
        "train.batch_size=8", "train.log_every=50", "train.warmup_steps=0"])
    if quick:
        return Recipe(name="engine-quick", config=TINY_CONFIG, overrides=overrides, base_steps=6,
                      step_steps=(4, 2, 2), val_clips=1, threshold_grid=(0.3,))
    return Recipe(name="engine", config=TINY_CONFIG, overrides=overrides, base_steps=40,
                  step_steps=(20, 10, 10), val_clips=2, threshold_grid=(0.1, 0.3, 0.5))


def headline_recipe(quick: bool) -> Recipe:
    """The tiny config's real size (64x64, 6 x 96) with a schedule short enough for the
    bench's 30 minutes on two cores (about 10 of them); --quick: the engine model's size.
    max_delta_nnz keeps ~3 % of the 663 K block weights per sub-task, in line with the
    committed per-task caps (docs/sharing.md: 25 K-150 K at the full schedule)."""
    if quick:
        return engine_recipe(quick=True)
    return Recipe(
        name="tiny", config=TINY_CONFIG,
        overrides=("data.train_clips=64", "data.val_clips=4", "data.test_clips=4",
                   "train.batch_size=8", "train.log_every=50", "train.warmup_steps=10",
                   "sharing.hard_concrete.log_alpha_init=2.0", "sharing.max_delta_nnz=20000"),
        base_steps=200, step_steps=(60, 25, 25), val_clips=4,
        # every other level of the config's grid: each level is a full reuse evaluation of
        # the val clips (~1.5 min on two loaded cores)
        threshold_grid=(0.1, 0.3, 0.5))


@dataclass
class BenchModel:
    """A quantised 4-task model and where it came from."""

    qm: QuantizedModel
    source: str  # "found" or "trained"
    bundle: Path
    recipe: dict[str, Any] | None  # None for a found bundle
    cfg: dict | None  # the training config (None: a found bundle without one)
    train_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)  # thresholds, boundaries chosen


def _four_tasks(qm: QuantizedModel) -> bool:
    return qm.tasks == (BASE_TASK, *SUB_TASKS)


def find_bundle() -> BenchModel | None:
    """A trained 4-task bundle from `make quant` or `make demo`, if one exists and carries
    thresholds. A bundle without them is lossless (th = 1: every delta is sent) and measures
    no activation sharing, so the bench trains its own model instead (its thresholds are
    selected as the sharing report selects them)."""
    from deltamtl.model.export.bundle import BundleError, load_bundle

    for rel in FOUND_BUNDLES:
        path = REPO / rel
        if not (path / "manifest.yaml").is_file():
            continue
        try:
            qm = load_bundle(path)
        except BundleError:
            continue
        if _four_tasks(qm) and qm.policy.thresholds:
            return BenchModel(qm=qm, source="found", bundle=path, recipe=None, cfg=None)
    return None


def _config(recipe: Recipe, root: Path) -> dict:
    from deltamtl.model.config import load_config

    paths = [f"sharing.base_checkpoint={root}/st_semseg/last.pt",
             f"sharing.st_checkpoint={root}/st_{{task}}/last.pt", f"sharing.out_root={root}/sharing",
             f"sharing.steps_step1={recipe.step_steps[0]}", f"sharing.steps_step2={recipe.step_steps[1]}",
             f"sharing.steps_step3={recipe.step_steps[2]}", f"train.steps={recipe.base_steps}",
             f"train.eval_every={recipe.base_steps}", f"train.ckpt_every={recipe.base_steps}"]
    cfg = load_config(REPO / recipe.config, [*recipe.overrides, *paths])
    cfg["sharing"]["quant"] = {"calib_batches": recipe.calib_batches}
    return cfg


def _select_policy(cfg: dict, recipe: Recipe, log: Callable[[str], None]) -> dict[str, Any]:
    """Thresholds and boundaries for the trained models, chosen as sharing-report does."""
    import torch
    from deltamtl.model.sharing.density import calibrate_thresholds, measure_densities
    from deltamtl.model.sharing.report import (
        evaluate_dense_video,
        load_subtasks,
        report_split_config,
        report_value,
        select_thresholds,
    )
    from deltamtl.model.sharing.train_steps import load_base
    from deltamtl.model.training.recipe import synthetic_split

    base = load_base(cfg, torch.device("cpu")).eval()
    subs = load_subtasks(cfg, base, 3)
    split_cfg = report_split_config(cfg)
    split_cfg["data"]["val_clips"] = recipe.val_clips
    val = synthetic_split(split_cfg, "val").clips[: recipe.val_clips]
    k = int(report_value(cfg, "keyframe_interval"))
    margin = float(report_value(cfg, "threshold_margin"))
    with torch.no_grad():
        # no ST models of the sub-tasks here: the gaps select_thresholds logs are then
        # against the same models run densely (the threshold cost itself)
        dense = evaluate_dense_video({BASE_TASK: base, **subs}, val, k)
        rels, trials = select_thresholds(base, subs, val, dense, list(recipe.threshold_grid),
                                         margin, k, log=log)
        ths = calibrate_thresholds(base, subs, val, rels)
        dens, _ = measure_densities(base, subs, val, ths, k, sparse_exec=False)
    return {"threshold_rel": rels, "thresholds": ths,
            "boundaries": {t: int(d.boundary) for t, d in dens.items()},
            "keyframe_interval": k, "margin": margin, "val_clips": len(val),
            "trials": [{"rel": t["rel"], "threshold_cost": t["threshold_cost"]} for t in trials]}


def train_model(recipe: Recipe, root: Path, log: Callable[[str], None] = print) -> BenchModel:
    """Train (or reuse from ``root``) the recipe's 4-task model and export its bundle."""
    import torch
    from deltamtl.model.export.bundle import BundleError, load_bundle
    from deltamtl.model.quant.cli import quantise
    from deltamtl.model.sharing.train_steps import run_all
    from deltamtl.model.training.train import train

    key = json.dumps(recipe.as_dict(), sort_keys=True)
    stamp = root / "recipe.json"
    bundle = root / "bundle"
    cfg = _config(recipe, root)
    if stamp.is_file() and json.loads(stamp.read_text()).get("recipe") == json.loads(key) \
            and (bundle / "manifest.yaml").is_file():
        meta = json.loads(stamp.read_text())
        try:
            qm = load_bundle(bundle)
        except BundleError as exc:  # written by an older exporter: train it again
            log(f"[bench] not reusing {bundle}: {exc}")
        else:
            return BenchModel(qm=qm, source="trained", bundle=bundle, recipe=recipe.as_dict(),
                              cfg=cfg, train_seconds=float(meta["seconds"]),
                              selection=meta["selection"],
                              notes=[f"reused the model trained by an earlier bench run ({stamp})"])
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the machine's two cores; the bench runs under nice
    try:
        log(f"[bench] training the {recipe.name} model: base task, {recipe.base_steps} steps")
        train(cfg, "st", root / "st_semseg", task=BASE_TASK, progress=False)
        log(f"[bench] sharing steps {recipe.step_steps} for {', '.join(SUB_TASKS)}")
        run_all(cfg, SUB_TASKS)
        log("[bench] threshold selection")
        selection = _select_policy(cfg, recipe, log)
        report = root / "selection.json"
        atomic_write_text(report, json.dumps(selection, indent=1, default=float))
        quantise(cfg, bundle, report=str(report), accuracy=False, log=lambda _m: None)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    atomic_write_text(stamp, json.dumps({"recipe": json.loads(key), "seconds": seconds,
                                         "selection": selection}, indent=1, default=float))
    return BenchModel(qm=load_bundle(bundle), source="trained", bundle=bundle,
                      recipe=recipe.as_dict(), cfg=cfg, train_seconds=seconds, selection=selection)


def headline_model(out: Path, quick: bool, bundle: Path | None,
                   log: Callable[[str], None] = print) -> BenchModel:
    """The bundle given, else a found one (not with --quick: CI must not depend on runs/),
    else one trained here."""
    from deltamtl.model.export.bundle import load_bundle

    if bundle is not None:
        qm = load_bundle(bundle)
        if not _four_tasks(qm):
            raise ValueError(f"{bundle}: tasks {qm.tasks}, the bench needs {(BASE_TASK, *SUB_TASKS)}")
        return BenchModel(qm=qm, source="given", bundle=bundle, recipe=None, cfg=None)
    if not quick:
        found = find_bundle()
        if found is not None:
            return found
    recipe = headline_recipe(quick)
    m = train_model(recipe, out / "model" / recipe.name, log)
    m.notes.append("no trained 4-task bundle under runs/quant or runs/demo: the bench trained "
                   f"this model itself ({recipe.command()})")
    return m
