"""Sub-task models that share the base task's weights, by module swapping on MultiTaskViT.

A sub-task model is an ordinary :class:`~deltamtl.model.training.vit.MultiTaskViT` with one head in
which

* ``encoder.patch_embed`` and ``encoder.pos_embed`` are the base model's very objects
  (shared, frozen): the sub-task's first block sees the base's embedded tokens;
* every block site (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``) is a
  :class:`~deltamtl.model.sharing.delta.DeltaLinear` over the base's ``nn.Linear``;
* LayerNorms (``norm1``, ``norm2``, final ``norm``) and the head are the sub-task's own,
  initialised from the base's LayerNorms and (when given) the single-task model's head.

No second model class: :func:`attach_deltas` swaps modules in place and
:func:`detach_deltas` swaps back to plain ``nn.Linear`` with merged weights.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from deltamtl.model.sharing.delta import DeltaLinear, GateConfig, delta_modules
from deltamtl.model.tasks import BASE_TASK, BLOCK_SITES, SUB_TASKS
from deltamtl.model.training.vit import MultiTaskViT
from torch import nn


def _get(module: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, dotted: str, value: nn.Module) -> None:
    parent, _, leaf = dotted.rpartition(".")
    setattr(_get(module, parent) if parent else module, leaf, value)


def block_sites(model: MultiTaskViT) -> Iterator[tuple[int, str, nn.Module]]:
    """(block index, site name, module) for every block linear site, in execution order."""
    for b, block in enumerate(model.encoder.blocks):
        for site in BLOCK_SITES:
            yield b, site, _get(block, site)


def attach_deltas(model: MultiTaskViT, base: MultiTaskViT, gate_cfg: GateConfig) -> None:
    """Swap every block site of ``model`` for a DeltaLinear over ``base``'s same site."""
    if len(model.encoder.blocks) != len(base.encoder.blocks):
        raise ValueError(
            f"attach_deltas: model has {len(model.encoder.blocks)} blocks, base has "
            f"{len(base.encoder.blocks)}"
        )
    for b, site, module in block_sites(model):
        base_linear = _get(base.encoder.blocks[b], site)
        if isinstance(base_linear, DeltaLinear):
            raise TypeError(f"attach_deltas: base block {b} {site} is itself a DeltaLinear")
        if isinstance(module, DeltaLinear):
            module.set_base(base_linear)
            continue
        _set(model.encoder.blocks[b], site, DeltaLinear(base_linear, gate_cfg))


@torch.no_grad()
def detach_deltas(model: MultiTaskViT) -> None:
    """Swap every DeltaLinear back to an nn.Linear holding W_b + mask*dW (a plain ViT)."""
    for name, module in delta_modules(model):
        linear = nn.Linear(module.in_features, module.out_features,
                           bias=module.base.bias is not None)
        linear.to(module.base.weight.device, module.base.weight.dtype)
        linear.weight.copy_(module.task_weight())
        if linear.bias is not None:
            linear.bias.copy_(module.task_bias())
        _set(model, name, linear)


def share_embeddings(model: MultiTaskViT, base: MultiTaskViT) -> None:
    """Make ``model`` use the base's patch embedding and position embedding objects."""
    model.encoder.patch_embed = base.encoder.patch_embed
    model.encoder.pos_embed = base.encoder.pos_embed


def build_subtask_model(
    base: MultiTaskViT,
    task: str,
    cfg: dict,
    gate_cfg: GateConfig,
    single_task: MultiTaskViT | None = None,
) -> MultiTaskViT:
    """A sub-task model: base's embeddings and weights + deltas, own LayerNorms and head.

    The LayerNorms start as copies of the base's (so, with all deltas zero, the encoder
    computes exactly the base's features). The head is copied from ``single_task`` when
    given (its ST head already maps features to this task's output), else freshly built.
    """
    if task == BASE_TASK or task not in SUB_TASKS:
        raise ValueError(f"build_subtask_model: task must be one of {SUB_TASKS}, got {task!r}")
    model = MultiTaskViT(cfg, [task])
    model.to(base.pixel_mean.device)
    model.pixel_mean.copy_(base.pixel_mean)
    model.pixel_std.copy_(base.pixel_std)
    for b, block in enumerate(model.encoder.blocks):
        block.norm1.load_state_dict(base.encoder.blocks[b].norm1.state_dict())
        block.norm2.load_state_dict(base.encoder.blocks[b].norm2.state_dict())
    model.encoder.norm.load_state_dict(base.encoder.norm.state_dict())
    if single_task is not None:
        if task not in single_task.heads:
            raise KeyError(f"single-task model has no head {task!r}; it has {single_task.tasks}")
        model.heads[task].load_state_dict(single_task.heads[task].state_dict())
    share_embeddings(model, base)
    attach_deltas(model, base, gate_cfg)
    return model


def freeze_base(base: MultiTaskViT) -> None:
    """The base never trains during sub-task training (and shared tensors stay unchanged)."""
    base.eval()
    for p in base.parameters():
        p.requires_grad_(False)


def owned_parameters(model: MultiTaskViT, base: MultiTaskViT) -> list[nn.Parameter]:
    """Trainable parameters that belong to the sub-task (not shared with the base)."""
    shared = {id(p) for p in base.parameters()}
    return [p for p in model.parameters() if id(p) not in shared and p.requires_grad]


def subtask_state_dict(model: MultiTaskViT) -> dict[str, torch.Tensor]:
    """What a sub-task checkpoint stores: everything except the shared embeddings."""
    return {
        k: v for k, v in model.state_dict().items()
        if not k.startswith(("encoder.patch_embed.", "encoder.pos_embed"))
    }


def load_subtask(
    base: MultiTaskViT, task: str, cfg: dict, gate_cfg: GateConfig,
    state: dict[str, torch.Tensor],
) -> MultiTaskViT:
    """Rebuild a sub-task model from its checkpoint (masks and phase included)."""
    model = build_subtask_model(base, task, cfg, gate_cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("encoder.patch_embed.", "encoder.pos_embed"))]
    if missing or unexpected:
        raise KeyError(f"sub-task {task} checkpoint: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


def clone_base(base: MultiTaskViT) -> MultiTaskViT:
    """A deep copy of a plain base model (no DeltaLinear inside)."""
    if delta_modules(base):
        raise TypeError("clone_base: the base must not contain DeltaLinear sites")
    return copy.deepcopy(base)
