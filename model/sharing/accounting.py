"""MAC, parameter and storage accounting for single-task and delta-shared models.

MACs per linear site with P tokens, I inputs, O outputs come from the contract's one rule,
:func:`deltamtl.contract.macs.job_macs` (docs/sharing.md, "Accounting"):

* DENSE:    nnz(x) * O                    (P * I * O in a dense model: every x non-zero)
* TASK:     nnz(d) * O + P * nnz(dW)      (d W_b^T, then (x_ref_b + d) dW^T)
* TEMPORAL: nnz(d) * O                    (a sub-task's dW merged into W_b: no extra MACs)

plus, per task and frame, the dense attention core (q k^T and attn v: 2 * P^2 * D per
block) and the task head (measured once with ``torch.utils.flop_counter``; FLOPs / 2).
LayerNorm, GELU, softmax and residual adds are not counted (as in the paper's supplement).

Storage follows the export's formats, taken from :mod:`deltamtl.contract`: a dense site
stores W int8 [O, I], bias int32 [O] and its requantiser (uint16 multiplier, uint8 shift
per output channel); a sub-task site stores dW in CSR (int32 row pointers [O + 1], uint16
column indices and int8 values per non-zero), its own int32 bias b_k = b_b + db_k and its
own requantiser. Everything that runs on the host (position embedding, LayerNorms, heads)
is stored as float32. A sub-task shares the base's patch and position embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import torch
from deltamtl.contract.descriptor import Region, region_bytes
from deltamtl.contract.formats import Mode
from deltamtl.contract.macs import dense_macs, job_macs
from deltamtl.model.sharing.delta import DeltaLinear
from deltamtl.model.training.vit import MultiTaskViT, linear_sites
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

HOST_FLOAT_BYTES = 4  # float32 for everything the host runs (LayerNorm, pos_embed, heads)
DENSE_SITE_REGIONS = (Region.W, Region.BIAS, Region.REQ_MULT, Region.REQ_SHIFT)
DELTA_SITE_REGIONS = (Region.DW_INDPTR, Region.DW_INDICES, Region.DW_VALUES, Region.BIAS,
                      Region.REQ_MULT, Region.REQ_SHIFT)


# -- MACs ----------------------------------------------------------------------------------
def site_macs(mode: Mode, tokens: int, in_dim: int, out_dim: int, nnz_act: float,
              nnz_dw: float = 0) -> float:
    """MACs of one site job (the contract's rule; counts or expected counts)."""
    return job_macs(mode, tokens, in_dim, out_dim, nnz_dw, nnz_act)


def dense_site_macs(tokens: int, in_dim: int, out_dim: int) -> int:
    """A site of a dense model: every input non-zero."""
    return dense_macs(tokens, in_dim, out_dim)


def tokens_of(model: MultiTaskViT) -> int:
    return int(model.encoder.pos_embed.shape[1])


def attention_core_macs(model: MultiTaskViT, batch: int = 1) -> int:
    """q k^T and attn v of every block: 2 * P^2 * D per block and image."""
    p, d = tokens_of(model), int(model.encoder.pos_embed.shape[2])
    return batch * len(model.encoder.blocks) * 2 * p * p * d


def _flop_counted_macs(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    total = counter.get_total_flops()
    if total % 2:
        raise ArithmeticError(f"flop counter returned an odd FLOP count {total}")
    return total // 2


@torch.no_grad()
def head_macs(model: MultiTaskViT, task: str, batch: int = 1) -> int:
    """MACs of one task head for one image (Linear + convs), via FlopCounterMode."""
    size = model.img_size
    p0 = model.encoder.pos_embed
    tokens = torch.zeros(1, p0.shape[1], p0.shape[2], dtype=p0.dtype, device=p0.device)
    x_norm = torch.zeros(1, 3, size, size, dtype=p0.dtype, device=p0.device)
    return batch * _flop_counted_macs(model.heads[task], tokens, x_norm)


def site_shapes(model: MultiTaskViT) -> dict[str, tuple[int, int]]:
    """Qualified site name -> (in, out) for the patch embedding and every block site."""
    out: dict[str, tuple[int, int]] = {}
    for name, module in linear_sites(model).items():
        out[name] = (module.in_features, module.out_features)
    for name, module in model.named_modules():
        if isinstance(module, DeltaLinear):
            out[name] = (module.in_features, module.out_features)
    return out


@dataclass(frozen=True)
class DenseMacs:
    patch_embed: int
    blocks_linear: int
    attention_core: int
    head: int

    @property
    def total(self) -> int:
        return self.patch_embed + self.blocks_linear + self.attention_core + self.head

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


def dense_model_macs(model: MultiTaskViT, task: str, with_patch_embed: bool = True) -> DenseMacs:
    """Analytic dense MACs of one image through ``model`` for ``task``."""
    p = tokens_of(model)
    embed = blocks = 0
    for name, (i, o) in site_shapes(model).items():
        if name.endswith("patch_embed"):
            embed += dense_site_macs(p, i, o)
        else:
            blocks += dense_site_macs(p, i, o)
    return DenseMacs(embed if with_patch_embed else 0, blocks, attention_core_macs(model),
                     head_macs(model, task))


@torch.no_grad()
def flop_counter_macs(model: MultiTaskViT, task: str) -> int:
    """Cross-check: FlopCounterMode's MACs for one image through the whole model."""
    p0 = model.encoder.pos_embed
    images = torch.rand(1, 3, model.img_size, model.img_size, dtype=p0.dtype, device=p0.device)
    return _flop_counted_macs(lambda x: model(x, task=task), images)


# -- parameters and storage ---------------------------------------------------------------
def _numel(params: Iterable[torch.Tensor]) -> int:
    return sum(int(p.numel()) for p in params)


def _site_modules(model: MultiTaskViT) -> dict[str, nn.Module]:
    sites: dict[str, nn.Module] = dict(linear_sites(model))
    sites.update({n: m for n, m in model.named_modules() if isinstance(m, DeltaLinear)})
    return sites


def _host_params(model: MultiTaskViT, exclude_shared: bool) -> int:
    """Parameters outside the linear sites (pos_embed, LayerNorms, heads)."""
    site_ids = {id(p) for m in _site_modules(model).values() for p in m.parameters()}
    n = 0
    for name, p in model.named_parameters():
        if id(p) in site_ids or (exclude_shared and name.startswith("encoder.pos_embed")):
            continue
        if ".weight_delta." in name or ".bias_delta." in name:
            continue  # delta tensors and gates are counted per site
        n += int(p.numel())
    return n


@dataclass(frozen=True)
class Footprint:
    """Stored parameters (count) and bytes of one model or sub-task."""

    params: int
    storage_bytes: int

    def __add__(self, other: Footprint) -> Footprint:
        return Footprint(self.params + other.params, self.storage_bytes + other.storage_bytes)

    @property
    def storage_mbit(self) -> float:
        return self.storage_bytes * 8 / 1e6


def dense_footprint(model: MultiTaskViT) -> Footprint:
    """A plain (single-task or base) model: every parameter, sites in the export's formats."""
    if any(isinstance(m, DeltaLinear) for m in model.modules()):
        raise TypeError("dense_footprint: model has DeltaLinear sites; use subtask_footprint")
    p = tokens_of(model)
    params = storage = 0
    for module in linear_sites(model).values():
        params += _numel(module.parameters())
        storage += sum(region_bytes(r, p, module.in_features, module.out_features, 0)
                       for r in DENSE_SITE_REGIONS)
    host = _host_params(model, exclude_shared=False)
    return Footprint(params + host, storage + HOST_FLOAT_BYTES * host)


def delta_nnz(module: DeltaLinear) -> tuple[int, int]:
    """(nnz of the effective dW, nnz of the effective db) of a DeltaLinear."""
    with torch.no_grad():
        nw = int(torch.count_nonzero(module.effective_delta_weight()))
        db = module.effective_delta_bias()
        nb = int(torch.count_nonzero(db)) if db is not None else 0
    return nw, nb


def subtask_footprint(model: MultiTaskViT) -> Footprint:
    """A sub-task: non-zero deltas (CSR) + own biases + own host parameters.

    The stored parameter count is nnz(dW) + nnz(db) + host parameters (LayerNorms, head);
    the shared patch/position embeddings and base weights are not the sub-task's.
    """
    deltas = [m for m in model.modules() if isinstance(m, DeltaLinear)]
    if not deltas:
        raise TypeError("subtask_footprint: model has no DeltaLinear sites")
    p = tokens_of(model)
    params = storage = 0
    for m in deltas:
        nw, nb = delta_nnz(m)
        params += nw + nb
        storage += sum(region_bytes(r, p, m.in_features, m.out_features, nw)
                       for r in DELTA_SITE_REGIONS)
    host = _host_params(model, exclude_shared=True)
    return Footprint(params + host, storage + HOST_FLOAT_BYTES * host)


def weight_density(model: MultiTaskViT) -> dict[int, float]:
    """S_w per block: non-zero fraction of the effective deltas (weights and biases)."""
    out: dict[int, float] = {}
    for b, block in enumerate(model.encoder.blocks):
        nnz = numel = 0
        for m in block.modules():
            if isinstance(m, DeltaLinear):
                nw, nb = delta_nnz(m)
                nnz += nw + nb
                numel += m.numel()
        if numel:
            out[b] = nnz / numel
    return out


def sharing_summary(st_models: Mapping[str, MultiTaskViT], base: MultiTaskViT,
                    subs: Mapping[str, MultiTaskViT]) -> dict[str, dict[str, float]]:
    """Parameters and storage of the ST set versus base + delta sub-tasks."""
    st = Footprint(0, 0)
    for m in st_models.values():
        st = st + dense_footprint(m)
    shared = dense_footprint(base)
    for m in subs.values():
        shared = shared + subtask_footprint(m)
    return {
        "st": {"params": st.params, "storage_mbit": st.storage_mbit},
        "shared": {"params": shared.params, "storage_mbit": shared.storage_mbit},
    }
