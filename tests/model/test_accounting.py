"""MAC / parameter / storage accounting against FlopCounterMode and hand counts."""

from __future__ import annotations

import pytest
import torch
from deltamtl.contract.formats import CSR_INDEX_DTYPE, CSR_INDPTR_DTYPE, CSR_VALUE_DTYPE, Mode
from deltamtl.model.sharing.accounting import (
    dense_footprint,
    dense_model_macs,
    dense_site_macs,
    flop_counter_macs,
    site_macs,
    subtask_footprint,
    weight_density,
)
from deltamtl.model.sharing.delta import delta_modules
from deltamtl.model.training.vit import MultiTaskViT, count_macs_per_image

from tests.helpers.sharing import SMALL_CFG, make_system

pytestmark = pytest.mark.sharing  # make test-sharing


def test_dense_macs_match_flop_counter_for_every_task() -> None:
    torch.manual_seed(0)
    model = MultiTaskViT(SMALL_CFG, ["semseg", "depth", "normals", "edges"]).eval()
    for task in model.tasks:
        analytic = dense_model_macs(model, task)
        assert analytic.total == flop_counter_macs(model, task)
    ref = count_macs_per_image(SMALL_CFG)
    m = dense_model_macs(model, "depth")
    assert (m.patch_embed, m.blocks_linear, m.attention_core) == (
        ref["patch_embed"], ref["blocks_linear"], ref["attention_core"])


def test_subtask_dense_macs_match_flop_counter() -> None:
    base, subs = make_system(1)
    for task, sub in subs.items():
        assert dense_model_macs(sub, task).total == flop_counter_macs(sub, task)


def test_site_macs_per_mode() -> None:
    p, i, o = 4, 5, 6
    assert site_macs(Mode.DENSE, p, i, o, nnz_act=p * i) == dense_site_macs(p, i, o) == p * i * o
    assert site_macs(Mode.DENSE, p, i, o, nnz_act=7, nnz_dw=3) == 7 * o
    assert site_macs(Mode.TASK, p, i, o, nnz_act=10, nnz_dw=3) == 10 * o + p * 3
    assert site_macs(Mode.TEMPORAL, p, i, o, nnz_act=7, nnz_dw=3) == 7 * o


def test_footprints_count_params_and_csr_bytes() -> None:
    base, subs = make_system(2, density=0.25)
    fp = dense_footprint(base)
    assert fp.params == sum(p.numel() for p in base.parameters())
    sub = subs["depth"]
    fp_sub = subtask_footprint(sub)
    deltas = delta_modules(sub)
    nnz_w = sum(int(torch.count_nonzero(m.effective_delta_weight())) for _, m in deltas)
    nnz_b = sum(int(torch.count_nonzero(m.effective_delta_bias())) for _, m in deltas)
    host = sum(p.numel() for n, p in sub.named_parameters()
               if ("norm" in n or n.startswith("heads.")))
    assert fp_sub.params == nnz_w + nnz_b + host
    csr = (nnz_w * (CSR_INDEX_DTYPE.itemsize + CSR_VALUE_DTYPE.itemsize)
           + sum((m.out_features + 1) * CSR_INDPTR_DTYPE.itemsize for _, m in deltas))
    per_site_meta = sum(m.out_features * (4 + 2 + 1) for _, m in deltas)  # bias, mult, shift
    assert fp_sub.storage_bytes == csr + per_site_meta + 4 * host
    dens = weight_density(sub)
    assert set(dens) == {0, 1, 2} and all(0.05 < d < 0.5 for d in dens.values())
