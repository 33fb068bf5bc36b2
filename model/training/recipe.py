"""Training recipes: what a training stage trains and how its loss is made.

:mod:`deltamtl.model.training.train` owns the loop (seeding, DDP, data order, AdamW, cosine
schedule with warmup, gradient clipping, checkpoints, validation, resume).  A
:class:`Recipe` owns everything stage-specific.  Every stage (single-task baselines,
the computation-sharing steps 1-3, ...) is a recipe run by the same entry point::

    deltamtl train --config configs/tiny.yaml --recipe st --task semseg --out runs/st_semseg

Writing a recipe
----------------
Write a factory ``recipe_<name>(args: RecipeArgs) -> Recipe`` and register it in
:data:`RECIPES` as a lazy ``"module:attr"`` string (the module is imported only when the
recipe is asked for).  ``--recipe package.module:attr`` also works without registering.
Subclass :class:`Recipe` and override what differs:

``build_model()``           architecture only, deterministic given the torch seed (the
                            trainer seeds identically on every rank first). Also used by
                            evaluation to rebuild the model before loading a checkpoint.
``initialize(model)``       fresh start only: load pretrained/base weights (e.g. the
                            dense base from ``cfg['sharing']['base_checkpoint']``).
``param_groups(model)``     AdamW groups; the default decays matrices only and skips
                            frozen parameters.  Groups may carry their own ``lr``; the
                            scheduler scales every group's initial lr by the same factor.
``datasets()``              (train, val) data sets; items are dicts of tensors.
``training_loss(model, batch, step)``
                            returns ``(loss, logs)``.  ``model`` may be wrapped in
                            DistributedDataParallel: run the forward by *calling* it so
                            gradients synchronise; use :func:`unwrap` for attributes.
``evaluate(model, dataset)``-> ``{task: {metric: value}}`` (default: every task's metrics).
``state_dict()/load_state_dict()``
                            extra recipe state to keep in checkpoints (e.g. a frozen mask).
``find_unused_parameters``  set True when some trainable parameters get no gradient in a step.

The recipe is built once per process (every rank) with :class:`RecipeArgs`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

#: name -> "module:attr" of a factory ``(RecipeArgs) -> Recipe``; imported lazily.
RECIPES: dict[str, str] = {
    "st": "deltamtl.model.training.recipe:recipe_st",
    "mt": "deltamtl.model.training.recipe:recipe_mt",
    "step1": "deltamtl.model.sharing.train_steps:recipe_step1",
    "step2": "deltamtl.model.sharing.train_steps:recipe_step2",
    "step3": "deltamtl.model.sharing.train_steps:recipe_step3",
}


@dataclass
class RecipeArgs:
    """What a recipe factory receives."""

    cfg: dict
    task: str | None = None              # --task (a name, or a comma list for 'mt')
    out_dir: Path | None = None          # run folder (None when rebuilding for evaluation)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world_size: int = 1


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DistributedDataParallel (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on >= 2-D weights except position embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or name.endswith("pos_embed"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def synthetic_split(cfg: dict, split: str, temporal_offsets: Sequence[int] = ()) -> Dataset:
    """The configured synthetic video split (train/val/test) at the model's resolution."""
    from deltamtl.model.data.datasets import SyntheticVideoDataset

    d, size = cfg["data"], cfg["model"]["img_size"]
    n_clips = {"train": d["train_clips"], "val": d["val_clips"], "test": d["test_clips"]}
    if split not in n_clips:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(n_clips)}")
    return SyntheticVideoDataset(split, n_clips[split], d["frames_per_clip"], size, size,
                                 seed=d["seed"], temporal_offsets=tuple(temporal_offsets))


class Recipe:
    """Base recipe; see the module docstring for the contract."""

    name = "base"
    find_unused_parameters = False

    def __init__(self, args: RecipeArgs, tasks: Sequence[str]) -> None:
        self.args = args
        self.cfg = args.cfg
        self.tasks = tuple(tasks)

    # -- model ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        from deltamtl.model.training.vit import MultiTaskViT

        return MultiTaskViT(self.cfg, self.tasks)

    def initialize(self, model: nn.Module) -> None:
        """Fresh start hook (not called on resume or evaluation)."""

    def param_groups(self, model: nn.Module) -> list[dict]:
        return default_param_groups(model, float(self.cfg["train"]["weight_decay"]))

    # -- data ----------------------------------------------------------------------------
    def datasets(self) -> tuple[Dataset, Dataset]:
        return synthetic_split(self.cfg, "train"), synthetic_split(self.cfg, "val")

    # -- loss ----------------------------------------------------------------------------
    def training_loss(self, model: nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    # -- evaluation ----------------------------------------------------------------------
    def evaluate(self, model: nn.Module, dataset: Dataset) -> dict[str, dict[str, float]]:
        from deltamtl.model.training.evaluate import evaluate_model

        return evaluate_model(unwrap(model), dataset, self.tasks,
                              batch_size=int(self.cfg["eval"]["batch_size"]))

    # -- extra checkpoint state ----------------------------------------------------------
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"recipe {self.name!r} keeps no state but the checkpoint has {sorted(state)}")


class DenseRecipe(Recipe):
    """Dense training of one or several tasks on a shared encoder (no sharing tricks).

    Loss = sum over tasks of ``train.loss_weights[task] * loss_task``.
    """

    name = "dense"

    def __init__(self, args: RecipeArgs, tasks: Sequence[str]) -> None:
        super().__init__(args, tasks)
        from deltamtl.model.data.synthetic import IGNORE_INDEX

        self.ignore_index = int(IGNORE_INDEX)
        weights = self.cfg["train"]["loss_weights"]
        missing = [t for t in self.tasks if t not in weights]
        if missing:
            raise ValueError(f"train.loss_weights has no weight for task(s) {missing}")
        self.weights = {t: float(weights[t]) for t in self.tasks}

    def training_loss(self, model: nn.Module, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        from deltamtl.model.training.augment import hflip_batch
        from deltamtl.model.training.losses import task_loss

        if self.cfg["train"]["hflip"]:
            batch = hflip_batch(batch)
        outputs = model(batch["image"], self.tasks if len(self.tasks) > 1 else self.tasks[0])
        total = torch.zeros((), device=batch["image"].device)
        logs: dict[str, float] = {}
        for t in self.tasks:
            loss_t = task_loss(t, outputs[t], batch, self.cfg["train"], self.ignore_index)
            logs[f"loss_{t}"] = float(loss_t.detach())
            total = total + self.weights[t] * loss_t
        return total, logs


def _known_task(task: str) -> str:
    from deltamtl.model.tasks import TASKS

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {tuple(TASKS)}")
    return task


def recipe_st(args: RecipeArgs) -> Recipe:
    """Single-task baseline: ``--task`` names the one task."""
    if not args.task or "," in args.task:
        raise ValueError("recipe 'st' needs exactly one --task (semseg, depth, normals or edges)")
    r = DenseRecipe(args, (_known_task(args.task),))
    r.name = "st"
    return r


def recipe_mt(args: RecipeArgs) -> Recipe:
    """Dense multi-task (shared encoder, one head per task); ``--task a,b`` or all tasks."""
    from deltamtl.model.tasks import TASKS

    tasks = tuple(_known_task(t.strip()) for t in args.task.split(",")) if args.task else tuple(TASKS)
    r = DenseRecipe(args, tasks)
    r.name = "mt"
    return r


def resolve_recipe(name: str) -> Callable[[RecipeArgs], Recipe]:
    """Registry name or ``"module:attr"`` -> factory; the module is imported only now."""
    target = RECIPES.get(name, name)
    if ":" not in target:
        raise ValueError(f"unknown recipe {name!r}; registered: {', '.join(sorted(RECIPES))} "
                         "(or give module:attr)")
    module_name, attr = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"recipe {name!r}: cannot import {module_name}: {exc}") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError as exc:
        raise ValueError(f"recipe {name!r}: {module_name} has no attribute {attr!r}") from exc
    return factory


def make_recipe(name: str, args: RecipeArgs) -> Recipe:
    recipe = resolve_recipe(name)(args)
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe factory {name!r} returned {type(recipe).__name__}, not a Recipe")
    return recipe
