"""Small random models for the computation-sharing tests (real MultiTaskViT, tiny shape)."""

from __future__ import annotations

import torch
from deltamtl.model.sharing.delta import GateConfig, delta_modules
from deltamtl.model.sharing.subtasks import SUB_TASKS, build_subtask_model
from deltamtl.model.training.vit import MultiTaskViT

SMALL_MODEL = {
    "img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 3, "num_heads": 2,
    "mlp_ratio": 2.0, "qkv_bias": True, "ln_eps": 1e-6, "num_classes": 5,
    "head_channels": 4, "head_convs": 2, "pixel_mean": [0.5, 0.5, 0.5],
    "pixel_std": [0.25, 0.25, 0.25], "depth_init_m": 3.0,
}
SMALL_CFG = {"model": SMALL_MODEL}


def make_system(seed: int, density: float = 0.3, dtype: torch.dtype = torch.float64,
                fixed: bool = True) -> tuple[MultiTaskViT, dict[str, MultiTaskViT]]:
    """A random base and three sub-task models with random sparse fixed deltas."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    base = MultiTaskViT(SMALL_CFG, ["semseg"]).to(dtype).eval()
    subs = {}
    for task in SUB_TASKS:
        sub = build_subtask_model(base, task, SMALL_CFG, GateConfig()).to(dtype).eval()
        with torch.no_grad():
            for _, m in delta_modules(sub):
                for gd in (m.weight_delta, m.bias_delta):
                    gd.delta.copy_(0.05 * torch.randn(gd.delta.shape, generator=gen, dtype=dtype))
                    la = torch.where(torch.rand(gd.delta.shape, generator=gen) < density, 5.0, -5.0)
                    gd.element_gate.log_alpha.copy_(la)
                    # and perturb LayerNorms so sub-task activations really differ
                for ln in (mod for mod in sub.modules() if isinstance(mod, torch.nn.LayerNorm)):
                    ln.weight.add_(0.1 * torch.randn(ln.weight.shape, generator=gen, dtype=dtype))
        if fixed:
            for _, m in delta_modules(sub):
                m.fix_mask()
        subs[task] = sub
    return base, subs
