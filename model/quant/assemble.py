"""The multi-task model the quantiser works on (:class:`MultiTask`: the dense base plus
sub-task models with DeltaLinear sites), assembled from checkpoints or at random for
tests, and the quantisation settings of the config (``qat_value``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from deltamtl.model.sharing.delta import GateConfig
from deltamtl.model.sharing.subtasks import _get, build_subtask_model
from deltamtl.model.tasks import BASE_TASK, SUB_TASKS
from deltamtl.model.training.vit import MultiTaskViT
from torch import nn


# ---------------------------------------------------------------------------------------
# The multi-task model container
# ---------------------------------------------------------------------------------------
class MultiTask(nn.Module):
    """Base (semseg) + sub-task models; ``forward(images, task)`` -> {task: output}."""

    def __init__(self, base: MultiTaskViT, subs: Mapping[str, MultiTaskViT]) -> None:
        super().__init__()
        if BASE_TASK not in base.heads:
            raise ValueError(f"the base model has no {BASE_TASK!r} head (it has {base.tasks})")
        self.base = base
        self.subs = nn.ModuleDict(dict(subs))
        self.num_classes = base.num_classes

    @property
    def tasks(self) -> tuple[str, ...]:
        return (BASE_TASK,) + tuple(self.subs.keys())

    def model_of(self, task: str) -> MultiTaskViT:
        return self.base if task == BASE_TASK else self.subs[task]

    def forward(self, images: torch.Tensor, task: str | Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = self.tasks if task is None else ((task,) if isinstance(task, str) else tuple(task))
        out: dict[str, torch.Tensor] = {}
        for t in wanted:
            if t not in self.tasks:
                raise KeyError(f"no task {t!r}; the model has {self.tasks}")
            out[t] = self.model_of(t)(images, task=t)[t]
        return out


def task_site_module(model: MultiTaskViT, layer: int, site: str) -> nn.Module:
    return model.encoder.patch_embed if layer < 0 else _get(model.encoder.blocks[layer], site)




def load_multitask(cfg: dict, base_ckpt: str | Path, sub_ckpts: Mapping[str, str | Path]) -> MultiTask:
    """Trained model from the base checkpoint and each sub-task's step-3 checkpoint."""
    from deltamtl.model.checkpoint import load_checkpoint, load_model_state

    ckpt = load_checkpoint(base_ckpt)
    base = MultiTaskViT(ckpt["config"], tuple(ckpt["tasks"]))
    load_model_state(base, ckpt["model"], base_ckpt)
    gate_cfg = GateConfig.from_sharing(cfg.get("sharing"))
    subs = {}
    for task, path in sub_ckpts.items():
        sck = load_checkpoint(path)
        if sck.get("task") != task:
            raise ValueError(f"{path}: checkpoint is for task {sck.get('task')!r}, expected {task!r}")
        # dW is a delta against one particular base: pairing it with another is meaningless
        trained_on = (sck["config"].get("sharing") or {}).get("base_checkpoint")
        if trained_on is None or Path(trained_on).resolve() != Path(base_ckpt).resolve():
            raise ValueError(
                f"{path}: sub-task {task!r} was trained against base {trained_on!r}, "
                f"not {str(base_ckpt)!r}; its delta weights do not apply to this base"
            )
        sub = build_subtask_model(base, task, sck["config"], gate_cfg)
        load_model_state(sub, sck["model"], path)
        subs[task] = sub
    return MultiTask(base, subs).eval()


# ---------------------------------------------------------------------------------------
# Small random multi-task models (tests, demos without a trained checkpoint)
# ---------------------------------------------------------------------------------------
SMALL_MODEL: dict[str, Any] = {
    "img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 2,
    "mlp_ratio": 2.0, "qkv_bias": True, "ln_eps": 1e-6, "num_classes": 5,
    "head_channels": 4, "head_convs": 2, "pixel_mean": [0.5, 0.5, 0.5],
    "pixel_std": [0.25, 0.25, 0.25], "depth_init_m": 3.0,
}


@torch.no_grad()
def random_multitask(seed: int, mcfg: Mapping[str, Any] | None = None, density: float = 0.2,
                     subtasks: Sequence[str] = SUB_TASKS) -> MultiTask:
    """A random base and sub-task models with random sparse fixed deltas (real modules)."""
    from deltamtl.model.sharing.delta import delta_modules

    cfg = {"model": dict(mcfg or SMALL_MODEL)}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    base = MultiTaskViT(cfg, [BASE_TASK]).eval()
    for p in base.parameters():  # weights larger than the init's std 0.02: livelier activations
        p.add_(0.1 * torch.randn(p.shape, generator=gen))
    subs = {}
    for task in subtasks:
        sub = build_subtask_model(base, task, cfg, GateConfig()).eval()
        for _, m in delta_modules(sub):
            for gd in (m.weight_delta, m.bias_delta):
                if gd is None:
                    continue
                gd.delta.copy_(0.05 * torch.randn(gd.delta.shape, generator=gen))
                keep = torch.rand(gd.delta.shape, generator=gen) < density
                gd.element_gate.log_alpha.copy_(torch.where(keep, 5.0, -5.0))
            m.fix_mask()
        for ln in (mod for mod in sub.modules() if isinstance(mod, nn.LayerNorm)):
            ln.weight.add_(0.1 * torch.randn(ln.weight.shape, generator=gen))
        subs[task] = sub
    return MultiTask(base, subs).eval()


def trained_multitask(cfg: dict, require_subtasks: bool = True, log: Any = None,
                      sub_paths: Mapping[str, str] | None = None) -> MultiTask:
    """The trained delta-shared model named by the config (base + step-3 sub-tasks).

    ``sub_paths`` overrides the checkpoint of individual sub-tasks. With
    ``require_subtasks=False`` sub-tasks whose checkpoint is missing are left out (and
    named through ``log``); the base checkpoint is always required.
    """
    from deltamtl.model.sharing.train_steps import sharing_value

    root = str(sharing_value(cfg, "out_root"))
    names = (cfg.get("sharing") or {}).get("subtasks") or []
    subs = {t: str(qat_value(cfg, "sub_checkpoint")).format(out_root=root, task=t) for t in names}
    unknown = sorted(set(sub_paths or {}) - set(names))
    if unknown:
        raise ValueError(f"sub-task checkpoint given for {unknown}, not in sharing.subtasks {names}")
    subs.update(sub_paths or {})
    base_ckpt = str(sharing_value(cfg, "base_checkpoint"))
    missing = [p for p in [base_ckpt, *subs.values()] if not Path(p).is_file()]
    if missing and (require_subtasks or base_ckpt in missing):
        raise FileNotFoundError(f"trained model: missing checkpoint(s) {missing} (run the training first)")
    if missing and log is not None:
        log(f"trained model: sub-task checkpoint(s) {missing} missing; quantising without them")
    subs = {t: p for t, p in subs.items() if p not in missing}
    return load_multitask(cfg, base_ckpt, subs)


# ---------------------------------------------------------------------------------------
# QAT fine-tuning recipe for the one training entry point (deltamtl.model.training.train)
# ---------------------------------------------------------------------------------------
QAT_DEFAULTS = {"lr_qat": 1.0e-5, "calib_batches": 8, "calib_percentile": 99.99,
                "sub_checkpoint": "{out_root}/{task}/step3/last.pt", "sub_checkpoints": {}}


def qat_value(cfg: dict, key: str) -> Any:
    q = (cfg.get("sharing") or {}).get("quant") or {}
    return q.get(key, QAT_DEFAULTS[key])
