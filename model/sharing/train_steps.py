"""The three-step sub-task training (recipes ``step1``, ``step2``, ``step3``) and a driver.

Each step is a :class:`~deltamtl.model.training.recipe.Recipe` run by the one training entry point::

    deltamtl train --config configs/tiny.yaml --recipe step1 --task depth \\
        --out runs/sharing/depth/step1 --steps 600

* step 1: learn dW (weights and biases of every block site) through Hard-Concrete gates;
  loss = task loss + lambda_w * E[L0] (expected number of non-zero delta entries).
* step 2: fix the mask deterministically from log-alpha (:meth:`DeltaLinear.fix_mask`)
  and fine-tune the non-zero deltas; masked deltas are exactly zero and stay so (their
  gradient is exactly zero, so AdamW never moves them).
* step 3: keep the mask; add lambda_a1 * |x_k - x_b|_1 over the inputs of every block site
  (x_b from the frozen base on the same batch) and lambda_a2 * |x_k(t) - x_k(t+tau)|_1
  (same model, tau drawn from ``sharing.temporal_offsets`` by the data set; pairs across a
  scene cut are left out). Both are sums over elements, averaged over images.

The sub-task model shares the base's patch/position embeddings and base weights (frozen),
owns its LayerNorms and head (see :mod:`deltamtl.model.sharing.subtasks`). The base is the dense
single-task model at ``sharing.base_checkpoint``; step 1 takes the head of
``sharing.st_checkpoint`` (``{task}`` substituted) when that file exists; step N > 1 starts
from ``sharing.init_checkpoint`` or, by default, ``{sharing.out_root}/{task}/step{N-1}/last.pt``.

Config keys (``sharing`` section; defaults here when absent): lambda_w, lambda_a1,
lambda_a2, lr_step1..3, steps_step1..3, lr_log_alpha (gates learn on their own,
faster scale: log-alpha must travel from +5 to below 0 within a short run),
delta_weight_decay, out_root, st_checkpoint, init_checkpoint, hard_concrete.*.

Coefficient scaling from the paper's ViT-B values (sum-reduced penalties): the task loss
is a mean, the penalties are sums, so a penalty's weight relative to the task loss grows
with the number of summed terms. To keep the same balance on a smaller model, multiply
lambda_w by (#delta parameters at ViT-B / #delta parameters here) and lambda_a by
(#site-input activations per image at ViT-B / here); :func:`scale_from_vit_b` computes it.

Driver: ``deltamtl sharing-train --config configs/tiny.yaml`` runs the
three steps for every sub-task (``--tasks``, ``--steps-scale`` for reduced budgets).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from deltamtl.model.checkpoint import (
    CheckpointError,
    config_difference,
    load_checkpoint,
    load_model_state,
)
from deltamtl.model.sharing.delta import GateConfig, delta_modules, expected_l0, fix_masks
from deltamtl.model.sharing.subtasks import (
    block_sites,
    build_subtask_model,
    freeze_base,
    owned_parameters,
)
from deltamtl.model.tasks import BASE_TASK, SUB_TASKS
from deltamtl.model.training.recipe import Recipe, RecipeArgs, synthetic_split, unwrap
from deltamtl.model.training.vit import MultiTaskViT
from torch import nn
from torch.utils.data import Dataset

# Defaults for keys a config may leave out (documented in docs/sharing.md).
DEFAULTS: dict[str, Any] = {
    "base_checkpoint": "runs/st_semseg/last.pt",
    "st_checkpoint": "runs/st_{task}/last.pt",
    "out_root": "runs/sharing",
    "init_checkpoint": None,
    "lambda_w": 3.0e-6,
    "lambda_a1": 5.0e-8,
    "lambda_a2": 5.0e-8,
    "lr_step1": 1.0e-4,
    "lr_step2": 6.0e-5,
    "lr_step3": 1.0e-5,
    "steps_step1": 1000,
    "steps_step2": 500,
    "steps_step3": 500,
    "lr_log_alpha": 0.05,
    "delta_weight_decay": 0.0,
    "max_delta_nnz": None,  # cap on kept delta entries when step 2 fixes the mask (None: none)
    "temporal_offsets": [-2, -1, 1, 2],
    "init_delta": "zero",   # 'zero' (Diff-pruning) or 'st': dW = W_st - W_b, LayerNorms from ST
}

# ViT-B/16 at 416x416 (the paper's NYUD-v2 video setting): counts for coefficient scaling.
VIT_B = {"embed_dim": 768, "depth": 12, "mlp_ratio": 4.0, "tokens": (416 // 16) ** 2}


def sharing_value(cfg: dict, key: str) -> Any:
    sharing = cfg.get("sharing") or {}
    if key not in sharing and key not in DEFAULTS:
        raise KeyError(f"sharing.{key}: no such key and no default")
    return sharing.get(key, DEFAULTS.get(key))


def site_counts(embed_dim: int, depth: int, mlp_ratio: float, tokens: int) -> tuple[int, int]:
    """(delta parameters over all block sites incl. biases, site-input activations per image)."""
    d, h = embed_dim, int(round(embed_dim * mlp_ratio))
    params = depth * (d * 3 * d + 3 * d + d * d + d + d * h + h + h * d + d)
    acts = depth * tokens * (d + d + d + h)
    return params, acts


def scale_from_vit_b(mcfg: dict) -> dict[str, float]:
    """Multipliers from ViT-B coefficients to this model's (sum-reduced penalties)."""
    tokens = (mcfg["img_size"] // mcfg["patch_size"]) ** 2
    pw, pa = site_counts(mcfg["embed_dim"], mcfg["depth"], mcfg["mlp_ratio"], tokens)
    bw, ba = site_counts(VIT_B["embed_dim"], VIT_B["depth"], VIT_B["mlp_ratio"], VIT_B["tokens"])
    return {"lambda_w": bw / pw, "lambda_a": ba / pa}


def load_base(cfg: dict, device: torch.device) -> MultiTaskViT:
    """The dense base model (frozen) from ``sharing.base_checkpoint``."""
    path = Path(sharing_value(cfg, "base_checkpoint"))
    ckpt = load_checkpoint(path, map_location=device)
    tasks = tuple(ckpt["tasks"])
    if BASE_TASK not in tasks:
        raise ValueError(f"sharing.base_checkpoint {path}: model has tasks {tasks}, no {BASE_TASK!r}")
    differs = config_difference(ckpt["config"].get("model"), cfg["model"], "model")
    if differs:
        raise CheckpointError(f"{path} (sharing.base_checkpoint): trained with another model: {differs}")
    base = MultiTaskViT(cfg, tasks).to(device)
    load_model_state(base, ckpt["model"], path)
    freeze_base(base)
    return base


def load_single_task(cfg: dict, task: str, device: torch.device) -> MultiTaskViT | None:
    path = Path(str(sharing_value(cfg, "st_checkpoint")).format(task=task))
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path, map_location=device)
    model = MultiTaskViT(ckpt["config"], tuple(ckpt["tasks"])).to(device)
    load_model_state(model, ckpt["model"], path)
    return model


@torch.no_grad()
def init_from_single_task(model: MultiTaskViT, st: MultiTaskViT) -> None:
    """Start step 1 at the single-task model: dW = W_st - W_b, db = b_st - b_b, and the
    ST LayerNorms (the embeddings stay the base's, shared). Useful when the ST models share
    the base's initialisation (same seed), as the paper's ImageNet-initialised ViTs do."""
    for b, site, module in block_sites(model):
        st_lin = st.encoder.blocks[b]
        for part in site.split("."):
            st_lin = getattr(st_lin, part)
        module.weight_delta.delta.copy_(st_lin.weight - module.base.weight)
        if module.bias_delta is not None:
            module.bias_delta.delta.copy_(st_lin.bias - module.base.bias)
    for b, block in enumerate(model.encoder.blocks):
        block.norm1.load_state_dict(st.encoder.blocks[b].norm1.state_dict())
        block.norm2.load_state_dict(st.encoder.blocks[b].norm2.state_dict())
    model.encoder.norm.load_state_dict(st.encoder.norm.state_dict())


class SiteInputs:
    """Forward pre-hooks collecting the input of every block site of a model, in order."""

    def __init__(self, model: MultiTaskViT) -> None:
        self.inputs: list[torch.Tensor] = []
        self._handles = [m.register_forward_pre_hook(self._hook)
                         for _, _, m in block_sites(model)]

    def _hook(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.inputs.append(args[0])

    def take(self) -> list[torch.Tensor]:
        out, self.inputs = self.inputs, []
        return out

    def close(self) -> None:
        for h in self._handles:
            h.remove()


class SharingStepRecipe(Recipe):
    """Shared machinery of the three steps; ``step`` selects the loss and the start point."""

    find_unused_parameters = False

    def __init__(self, args: RecipeArgs, step: int) -> None:
        task = args.task
        if task not in SUB_TASKS:
            raise ValueError(f"recipe step{step} needs --task one of {SUB_TASKS}, got {task!r}")
        super().__init__(args, (task,))
        self.step = step
        self.name = f"step{step}"
        self.task = task
        self.gate_cfg = GateConfig.from_sharing(self.cfg.get("sharing"))
        self.base: MultiTaskViT | None = None
        from deltamtl.model.data.synthetic import IGNORE_INDEX

        self.ignore_index = int(IGNORE_INDEX)

    # -- model ---------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        self.base = load_base(self.cfg, self.args.device)
        # The phase (gated / fixed) and the mask are buffers: a checkpoint restores them.
        return build_subtask_model(self.base, self.task, self.cfg, self.gate_cfg)

    def _init_checkpoint(self) -> Path:
        explicit = sharing_value(self.cfg, "init_checkpoint")
        if explicit:
            return Path(str(explicit).format(task=self.task))
        root = Path(sharing_value(self.cfg, "out_root"))
        return root / self.task / f"step{self.step - 1}" / "last.pt"

    def initialize(self, model: nn.Module) -> None:
        if self.step == 1:
            st = load_single_task(self.cfg, self.task, self.args.device)
            if st is not None:
                model.heads[self.task].load_state_dict(st.heads[self.task].state_dict())
                if sharing_value(self.cfg, "init_delta") == "st":
                    init_from_single_task(model, st)
            else:
                print(f"step1: no single-task checkpoint for {self.task}; head starts fresh",
                      file=sys.stderr)
            return
        path = self._init_checkpoint()
        ckpt = load_checkpoint(path, map_location=self.args.device)
        if ckpt["recipe"] != f"step{self.step - 1}" or ckpt.get("task") != self.task:
            raise ValueError(
                f"{path}: written by recipe {ckpt['recipe']!r} for task {ckpt.get('task')!r}; "
                f"step{self.step} of {self.task} needs step{self.step - 1} of {self.task}"
            )
        load_model_state(model, ckpt["model"], path)
        # step 1 -> 2: mask from log-alpha, at most max_delta_nnz entries; a no-op for step 3
        cap = sharing_value(self.cfg, "max_delta_nnz")
        wanted, kept = fix_masks(unwrap(model), None if cap is None else int(cap))
        if self.step == 2 and os.environ.get("RANK", "0") == "0":  # every rank fixes the same mask
            print(f"step2 {self.task}: the gates keep {wanted} delta entries"
                  + (f", the cap max_delta_nnz={cap} keeps {kept}" if kept < wanted else ""),
                  flush=True)

    def param_groups(self, model: nn.Module) -> list[dict]:
        model = unwrap(model)
        assert self.base is not None
        lr = float(sharing_value(self.cfg, f"lr_step{self.step}"))
        wd = float(self.cfg["train"]["weight_decay"])
        owned = {id(p) for p in owned_parameters(model, self.base)}
        deltas, gates, decay, no_decay = [], [], [], []
        for name, p in model.named_parameters():
            if id(p) not in owned:
                continue
            if name.endswith(".delta"):
                deltas.append(p)
            elif name.endswith(".log_alpha"):
                gates.append(p)
            elif p.ndim >= 2:
                decay.append(p)
            else:
                no_decay.append(p)
        groups = [
            {"params": deltas, "lr": lr, "weight_decay": float(sharing_value(self.cfg, "delta_weight_decay"))},
            {"params": decay, "lr": lr, "weight_decay": wd},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0},
        ]
        if gates:
            groups.append({"params": gates, "lr": float(sharing_value(self.cfg, "lr_log_alpha")),
                           "weight_decay": 0.0})
        return [g for g in groups if g["params"]]

    # -- data ----------------------------------------------------------------------------
    def datasets(self) -> tuple[Dataset, Dataset]:
        offsets = sharing_value(self.cfg, "temporal_offsets") if self.step == 3 else ()
        if self.step == 3 and (not offsets or 0 in offsets):
            raise ValueError(f"sharing.temporal_offsets must be non-zero offsets, got {offsets!r}")
        return synthetic_split(self.cfg, "train", temporal_offsets=offsets), synthetic_split(self.cfg, "val")

    # -- loss ----------------------------------------------------------------------------
    def _task_loss(self, output: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        from deltamtl.model.training.losses import task_loss

        return task_loss(self.task, output, batch, self.cfg["train"], self.ignore_index)

    def training_loss(self, model: nn.Module, batch: dict[str, Any], step: int
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        if self.step < 3:
            out = model(batch["image"])[self.task]
            loss = self._task_loss(out, batch)
            logs = {f"loss_{self.task}": float(loss.detach())}
            if self.step == 1:
                l0 = expected_l0(unwrap(model))
                loss = loss + float(sharing_value(self.cfg, "lambda_w")) * l0
                logs["expected_l0"] = float(l0.detach())
                logs["expected_density"] = float(l0.detach()) / self._delta_numel(unwrap(model))
            return loss, logs
        return self._step3_loss(model, batch)

    @staticmethod
    def _delta_numel(model: nn.Module) -> int:
        return sum(m.numel() for _, m in delta_modules(model))

    def _step3_loss(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        assert self.base is not None
        images, images_tau = batch["image"], batch["image_tau"]
        n = images.shape[0]
        sub_hook, base_hook = SiteInputs(unwrap(model)), SiteInputs(self.base)
        try:
            with torch.no_grad():
                self.base(images, task=BASE_TASK)
            base_inputs = base_hook.take()
            out = model(torch.cat([images, images_tau]))[self.task]
            sub_inputs = sub_hook.take()
        finally:
            sub_hook.close()
            base_hook.close()
        task_l = self._task_loss(out[:n], batch)
        same = batch.get("same_shot")
        pair_w = (same.to(images.dtype) if same is not None else images.new_ones(n)).view(n, 1, 1)
        l1_task = images.new_zeros(())
        l1_temp = images.new_zeros(())
        for xs, xb in zip(sub_inputs, base_inputs, strict=True):
            l1_task = l1_task + (xs[:n] - xb).abs().sum() / n
            l1_temp = l1_temp + ((xs[:n] - xs[n:]).abs() * pair_w).sum() / n
        la1 = float(sharing_value(self.cfg, "lambda_a1"))
        la2 = float(sharing_value(self.cfg, "lambda_a2"))
        loss = task_l + la1 * l1_task + la2 * l1_temp
        return loss, {f"loss_{self.task}": float(task_l.detach()), "l1_task": float(l1_task.detach()),
                      "l1_temporal": float(l1_temp.detach())}


def recipe_step1(args: RecipeArgs) -> Recipe:
    return SharingStepRecipe(args, 1)


def recipe_step2(args: RecipeArgs) -> Recipe:
    return SharingStepRecipe(args, 2)


def recipe_step3(args: RecipeArgs) -> Recipe:
    return SharingStepRecipe(args, 3)


# -- driver ---------------------------------------------------------------------------------
def run_all(cfg: dict, tasks: Sequence[str], steps_scale: float = 1.0,
            progress: bool = False, steps: Sequence[int] = (1, 2, 3)) -> dict[str, dict]:
    """Steps 1-3 (or the listed ones) for each sub-task through the one training entry point.
    A step starts from the previous step's checkpoint under sharing.out_root."""
    from deltamtl.model.config import apply_overrides
    from deltamtl.model.training.train import train

    root = Path(sharing_value(cfg, "out_root"))
    results: dict[str, dict] = {}
    for task in tasks:
        for step in steps:
            n = max(1, int(round(int(sharing_value(cfg, f"steps_step{step}")) * steps_scale)))
            step_cfg = apply_overrides(cfg, [f"train.steps={n}",
                                             f"train.warmup_steps={min(int(cfg['train']['warmup_steps']), n // 5)}",
                                             f"train.eval_every={n}", f"train.ckpt_every={n}"])
            res = train(step_cfg, f"step{step}", root / task / f"step{step}", task=task,
                        progress=progress)
            results.setdefault(task, {})[f"step{step}"] = res
            print(json.dumps({"task": task, "step": step, "metrics": res["metrics"]}), flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    from deltamtl.model.config import load_config

    p = argparse.ArgumentParser(prog="deltamtl sharing-train",
                                description="Run sharing steps 1-3 for every sub-task.")
    p.add_argument("--config", required=True)
    p.add_argument("--tasks", default=",".join(SUB_TASKS))
    p.add_argument("--steps-scale", type=float, default=1.0,
                   help="multiply sharing.steps_step1..3 (reduced budgets)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--steps", default="1,2,3",
                   help="which steps to run, e.g. 2,3 to go on from an existing step 1")
    p.add_argument("--progress", action="store_true")
    a = p.parse_args(argv)
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    try:
        steps = sorted({int(s) for s in a.steps.split(",") if s.strip()})
    except ValueError:
        p.error(f"--steps {a.steps!r}: expected step numbers from 1, 2, 3, e.g. 2,3")
    if not steps or any(s not in (1, 2, 3) for s in steps):
        p.error(f"--steps {a.steps!r}: expected step numbers from 1, 2, 3, e.g. 2,3")
    for task in tasks:  # one config per sub-task: its per_task entries apply
        run_all(load_config(a.config, a.overrides, task=task), [task], a.steps_scale, a.progress,
                steps)
    return 0

