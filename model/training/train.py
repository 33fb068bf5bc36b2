"""The one training entry point for every stage (single-task baselines, sharing steps).

Usage::

    deltamtl train --config configs/tiny.yaml --recipe st --task semseg \\
        --out runs/st_semseg [--steps N] [--resume] [--set train.lr=5e-4 ...]
    torchrun --nproc_per_node=2 --no-python deltamtl train ...   # same command under DDP

What a stage trains and how its loss is made is a :class:`~deltamtl.model.training.recipe.Recipe`
(see :mod:`deltamtl.model.training.recipe` for the contract and the registry: ``st``, ``mt``, and
``step1``/``step2``/``step3`` from :mod:`deltamtl.model.sharing.train_steps`, imported lazily).
This module owns the loop:

* **Seeding.** Every rank seeds with ``train.seed`` before ``build_model`` so all ranks
  start identical (DDP also broadcasts rank 0's parameters); afterwards each rank reseeds
  with ``seed + 1 + rank`` so stochastic recipes (gates, tau draws) differ per rank.
* **Data order** is a pure function of (seed, epoch, rank): a ``DistributedSampler``
  (also with one process) cut into batches, dropping the last partial batch.  On resume
  the loop skips to the batch of the saved step, so a resumed run sees the same batches.
* **Optimiser** AdamW(betas, weight_decay) on the recipe's parameter groups; linear warmup
  for ``warmup_steps`` then cosine decay to ``lr * min_lr_ratio`` at ``steps``; global
  gradient-norm clipping at ``grad_clip`` (0 disables).
* **DDP.** Under ``torchrun`` (``WORLD_SIZE > 1``): gloo on CPU, nccl on CUDA; the global
  ``train.batch_size`` is split evenly over ranks; only rank 0 writes files and runs
  validation (the others wait at a barrier).
* **Outputs** in ``--out``: ``config.yaml``, ``last.pt`` (atomic; model, optimizer,
  scheduler, step, per-rank RNG states, config, recipe), ``log.jsonl`` (training
  losses and validation metrics, one JSON object per line).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from deltamtl.contract.atomic import atomic_write_text
from deltamtl.contract.errors import UserInputError
from deltamtl.model.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    atomic_torch_save,
    capture_rng_state,
    config_difference,
    json_safe,
    load_checkpoint,
    load_model_state,
    restore_rng_state,
    seed_everything,
)
from deltamtl.model.config import ConfigError, dump_config, load_config
from deltamtl.model.training.recipe import Recipe, RecipeArgs, make_recipe, unwrap
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

CHECKPOINT_NAME = "last.pt"


class TrainSetupError(UserInputError):
    """The run cannot start as asked (resume mismatch, batch size vs ranks, empty data)."""


LOG_NAME = "log.jsonl"


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the torchrun process group if WORLD_SIZE > 1; choose the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistInfo(rank, world, local_rank, device)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base lr after ``step`` optimiser steps: linear warmup, cosine decay."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_plan(dataset: Dataset, batch_per_rank: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    """This rank's batches (index lists) for ``epoch``; a pure function of its arguments."""
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    return [idx[i : i + batch_per_rank] for i in range(0, len(idx) - batch_per_rank + 1, batch_per_rank)]


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _gather_rng(info: DistInfo) -> list[dict]:
    state = capture_rng_state()
    if not info.distributed:
        return [state]
    states: list[Any] = [None] * info.world_size
    dist.all_gather_object(states, state)
    return states


def _set_threads(cfg: dict, info: DistInfo) -> None:
    threads = int(cfg["train"]["threads"])
    if threads > 0 and info.device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(info.world_size)))
        torch.set_num_threads(max(1, threads // max(1, local_world)))


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(json_safe(record)) + "\n")


def _fmt_metrics(metrics: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{t}: " + ", ".join(f"{k}={v:.4g}" for k, v in m.items()) for t, m in metrics.items())


def train(
    cfg: dict,
    recipe_name: str,
    out_dir: str | os.PathLike,
    task: str | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
) -> dict:
    """Run (or resume) a training stage; returns ``{"step", "metrics", "checkpoint", "model"}``
    (``model`` is the trained, unwrapped module of this rank).

    ``stop_after`` ends this process after that many total steps (checkpointing first)
    without changing the schedule, which is how an interrupted run is emulated in tests.
    """
    info = init_distributed()
    _set_threads(cfg, info)
    out = Path(out_dir)
    tcfg = cfg["train"]
    total_steps = int(tcfg["steps"])
    if tcfg["batch_size"] % info.world_size:
        raise TrainSetupError(f"train.batch_size {tcfg['batch_size']} is not divisible by {info.world_size} ranks")
    batch_per_rank = tcfg["batch_size"] // info.world_size

    seed_everything(int(tcfg["seed"]))  # identical init on every rank
    recipe: Recipe = make_recipe(recipe_name, RecipeArgs(cfg, task, out, info.device, info.rank, info.world_size))
    model = recipe.build_model().to(info.device)
    ckpt_path = out / CHECKPOINT_NAME
    ckpt = None
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: {ckpt_path} does not exist")
        ckpt = load_checkpoint(ckpt_path, map_location=info.device)
        differs = config_difference(ckpt["config"].get("model"), cfg["model"], "model")
        if differs:
            raise TrainSetupError(f"--resume: {ckpt_path}: trained with another model: {differs}")
        if ckpt["recipe"] != recipe_name:
            raise TrainSetupError(f"--resume: {ckpt_path} was written by recipe {ckpt['recipe']!r}, not {recipe_name!r}")
        load_model_state(model, ckpt["model"], ckpt_path)
        recipe.load_state_dict(ckpt.get("recipe_state", {}))
    else:
        recipe.initialize(model)

    # Data sets are built before the per-rank reseed / RNG restore, so any randomness they
    # use at construction cannot shift the RNG stream between a fresh and a resumed run.
    train_ds, val_ds = recipe.datasets()
    groups = recipe.param_groups(model)
    base_lr = float(tcfg["lr"])
    optimizer = torch.optim.AdamW(groups, lr=base_lr, betas=tuple(tcfg["betas"]), weight_decay=float(tcfg["weight_decay"]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, int(tcfg["warmup_steps"]), total_steps, float(tcfg["min_lr_ratio"]))
    )
    step = 0
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step = int(ckpt["step"])
        rng = ckpt.get("rng") or []
        if len(rng) == info.world_size:
            restore_rng_state(rng[info.rank])
    else:
        seed_everything(int(tcfg["seed"]) + 1 + info.rank)

    train_model: nn.Module = model
    if info.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None,
            find_unused_parameters=recipe.find_unused_parameters,
        )

    steps_per_epoch = len(batch_plan(train_ds, batch_per_rank, tcfg["seed"], 0, info.rank, info.world_size))
    if steps_per_epoch == 0:
        raise TrainSetupError(f"training set has {len(train_ds)} items, fewer than one batch of {batch_per_rank} per rank")

    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", dump_config(cfg))
    log_path = out / LOG_NAME
    last_metrics: dict = dict(ckpt.get("metrics", {})) if ckpt else {}
    end_step = total_steps if stop_after is None else min(total_steps, stop_after)

    def save() -> None:
        states = _gather_rng(info)
        if info.is_main:
            atomic_torch_save(
                {
                    "format": CHECKPOINT_FORMAT, "model": unwrap(model).state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "step": step, "config": cfg, "recipe": recipe_name, "task": task,
                    "tasks": tuple(recipe.tasks), "recipe_state": recipe.state_dict(),
                    "rng": states, "metrics": last_metrics,
                },
                ckpt_path,
            )

    def validate() -> None:
        nonlocal last_metrics
        if info.is_main:
            model.eval()
            with torch.no_grad():
                last_metrics = recipe.evaluate(model, val_ds)
            model.train()
            _append_log(log_path, {"step": step, "val": last_metrics})
            print(f"[val step {step}] {_fmt_metrics(last_metrics)}", file=sys.stderr, flush=True)
        if info.distributed:
            dist.barrier()

    bar = None
    if progress and info.is_main:
        from tqdm import tqdm

        bar = tqdm(total=end_step, initial=step, desc=f"{recipe_name}:{','.join(recipe.tasks)}",
                   dynamic_ncols=True, file=sys.stderr)
    model.train()
    t_last, n_images = time.perf_counter(), 0
    while step < end_step:
        epoch, offset = divmod(step, steps_per_epoch)
        plan = batch_plan(train_ds, batch_per_rank, tcfg["seed"], epoch, info.rank, info.world_size)[offset:]
        # A private generator: creating a DataLoader iterator draws a base seed, which must
        # not advance the global RNG (resumed runs create it at a different point).
        loader_rng = torch.Generator().manual_seed(int(tcfg["seed"]) * 100003 + epoch)
        loader = DataLoader(train_ds, batch_sampler=plan, num_workers=int(tcfg["num_workers"]),
                            generator=loader_rng)
        for batch in loader:
            batch = to_device(batch, info.device)
            loss, logs = recipe.training_loss(train_model, batch, step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {float(loss)} at step {step} ({logs})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = None
            if tcfg["grad_clip"] > 0:
                params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
                grad_norm = float(torch.nn.utils.clip_grad_norm_(params, float(tcfg["grad_clip"])))
            optimizer.step()
            scheduler.step()
            step += 1
            n_images += batch["image"].shape[0] * info.world_size
            if info.is_main and (step % tcfg["log_every"] == 0 or step == end_step):
                now = time.perf_counter()
                ips = n_images / max(now - t_last, 1e-9)
                t_last, n_images = now, 0
                record = {"step": step, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0],
                          "img_per_s": ips, **logs}
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm
                _append_log(log_path, record)
                if bar is not None:
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", img_s=f"{ips:.1f}")
            if bar is not None:
                bar.update(1)
            if step % tcfg["eval_every"] == 0 or step == total_steps:
                validate()
            if step % tcfg["ckpt_every"] == 0 or step == end_step:
                save()
            if step >= end_step:
                break
    if bar is not None:
        bar.close()
    if ckpt is not None and step == int(ckpt["step"]):
        save()  # nothing left to do; keep the file current (e.g. a finished run resumed)
    return {"step": step, "metrics": last_metrics, "checkpoint": str(ckpt_path), "model": model}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deltamtl train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="YAML config, e.g. configs/tiny.yaml")
    p.add_argument("--recipe", default="st", help="registered recipe (st, mt, step1, step2, step3) or module:attr")
    p.add_argument("--task", default=None, help="task for 'st' (semseg|depth|normals|edges); comma list for 'mt'")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs)")
    p.add_argument("--steps", type=int, default=None, help="shorthand for --set train.steps=N")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (e.g. --set train.lr=5e-4)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    try:
        # a single task's run picks up its per_task entries (a comma list, 'mt', does not)
        one_task = args.task if args.task and "," not in args.task else None
        cfg = load_config(args.config, overrides, task=one_task)
        result = train(cfg, args.recipe, args.out, task=args.task, resume=args.resume,
                       progress=not args.no_progress)
    except (ConfigError, CheckpointError, FileNotFoundError, TrainSetupError) as exc:
        print(f"deltamtl train: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(json_safe({"step": result["step"], "checkpoint": result["checkpoint"],
                                    "metrics": result["metrics"]})))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0

