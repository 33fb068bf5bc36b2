"""Threshold inference: the site algebra, th=0 == dense, bounded temporal error, MAC ledger."""

from __future__ import annotations

import pytest
import torch
from deltamtl.contract.formats import Mode
from deltamtl.model.sharing.accounting import (
    attention_core_macs,
    dense_site_macs,
    flop_counter_macs,
    head_macs,
)
from deltamtl.model.sharing.reuse import (
    EXTRAS_BLOCK,
    Policy,
    ReuseEngine,
    act_sparse_matmul,
    keep,
    weight_sparse_matmul,
)
from deltamtl.model.sharing.subtasks import BASE_TASK, _get, block_sites

from tests.helpers import seeding
from tests.helpers.sharing import make_system

pytestmark = pytest.mark.sharing  # make test-sharing


def _dense_outputs(base, subs, frames):
    with torch.no_grad():
        return [{BASE_TASK: base(f)[BASE_TASK], **{t: m(f)[t] for t, m in subs.items()}}
                for f in frames]


def test_sparse_products_exact_on_integers() -> None:
    g = torch.Generator().manual_seed(11)
    d = torch.randint(-3, 4, (2, 5, 6), generator=g).double()
    d[torch.rand(d.shape, generator=g) < 0.6] = 0
    w = torch.randint(-9, 10, (4, 6), generator=g).double()
    y, macs = act_sparse_matmul(d, w)
    assert torch.equal(y, d @ w.t()) and macs == int(torch.count_nonzero(d)) * 4
    dw = w * (torch.rand(w.shape, generator=g) < 0.3)
    y2, macs2 = weight_sparse_matmul(d, dw)
    assert torch.equal(y2, d @ dw.t()) and macs2 == 2 * 5 * int(torch.count_nonzero(dw))
    assert torch.equal(keep(torch.tensor([-2.0, 1.0, 3.0]), 2.0), torch.tensor([-2.0, 0.0, 3.0]))
    with pytest.raises(ValueError):
        keep(d, -1.0)


@pytest.mark.parametrize("boundaries", [{"depth": 0, "normals": 1, "edges": -1},
                                        {"depth": 2, "normals": 2, "edges": 2}])
def test_threshold_zero_equals_dense(boundaries) -> None:
    seed = seeding.seed_for("test_threshold_zero_equals_dense", bits=13)
    base, subs = make_system(seed)
    frames = torch.rand(7, 2, 3, 16, 16, dtype=torch.float64)
    dense = _dense_outputs(base, subs, frames)
    policy = Policy(depth=3, keyframe_interval=3, boundaries=boundaries)
    with ReuseEngine(base, subs, policy) as eng:
        outs = list(eng.run_clip(frames))
    for o, d in zip(outs, dense, strict=True):
        for t in d:
            torch.testing.assert_close(o[t], d[t], rtol=0, atol=1e-12)
    # Modes really exercised: temporal frames and task sites both ran.
    modes = {k[3] for k in eng.ledger.macs}
    assert {"DENSE", "TASK", "TEMPORAL"} <= modes
    # The engine removed its wrappers: the models are plain again.
    assert type(base.encoder.patch_embed).__name__ == "Linear"


def test_site_algebra_exact_on_integer_values() -> None:
    """One site per role with integer data: TASK and TEMPORAL equal X W_k^T + b_k bitwise."""
    base, subs = make_system(5)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # integer weights make float64 arithmetic exact
        for m in [base, *subs.values()]:
            for _, _, mod in block_sites(m):
                lin = mod.base if hasattr(mod, "base") else mod
                lin.weight.copy_(torch.randint(-4, 5, lin.weight.shape, generator=g).double())
                lin.bias.copy_(torch.randint(-4, 5, lin.bias.shape, generator=g).double())
                if hasattr(mod, "weight_delta"):
                    for gd in (mod.weight_delta, mod.bias_delta):
                        gd.delta.copy_(torch.randint(-2, 3, gd.delta.shape, generator=g).double())
                        gd.enforce_mask()
    policy = Policy(depth=3, keyframe_interval=2, boundaries={"depth": 0, "normals": 0,
                                                              "edges": 0})
    eng = ReuseEngine(base, subs, policy, count_dense_extras=False)
    eng.install()
    try:
        qkv_b = _get(base.encoder.blocks[0], "attn.qkv")
        qkv_k = {t: _get(m.encoder.blocks[1], "attn.qkv") for t, m in subs.items()}
        qkv_t = {t: _get(m.encoder.blocks[0], "attn.qkv") for t, m in subs.items()}
        for frame in range(4):
            eng.frame_id += 1
            eng.keyframe = frame % 2 == 0
            xb = torch.randint(-5, 6, (1, 16, 24), generator=g).double()
            yb = qkv_b(xb)
            assert torch.equal(yb, xb @ qkv_b.inner.weight.t() + qkv_b.inner.bias)
            # Block 0 of each sub-task reads the base's qkv refs (TASK mode always).
            for _t, site in qkv_t.items():
                xk = xb + torch.randint(-1, 2, xb.shape, generator=g).double()
                w = site.inner.task_weight()
                assert torch.equal(site(xk), xk @ w.t() + site.inner.task_bias())
            # Block 1 of a sub-task above boundary 0 on non-keyframes is TEMPORAL on own refs:
            # needs its block-1 base site to have run this frame as well.
            xb1 = torch.randint(-5, 6, (1, 16, 24), generator=g).double()
            _get(base.encoder.blocks[1], "attn.qkv")(xb1)
            for _t, site in qkv_k.items():
                xk = torch.randint(-5, 6, (1, 16, 24), generator=g).double()
                w = site.inner.task_weight()
                assert torch.equal(site(xk), xk @ w.t() + site.inner.task_bias())
    finally:
        eng.remove()


def test_temporal_error_bounded_by_threshold_without_drift() -> None:
    base, subs = make_system(7)
    th = 0.05
    policy = Policy(depth=3, keyframe_interval=1000, task_reuse=False,
                    thresholds={BASE_TASK: [th] * 3})
    eng = ReuseEngine(base, {}, policy, count_dense_extras=False)
    eng.install()
    try:
        site = _get(base.encoder.blocks[0], "mlp.fc1")
        w, b = site.inner.weight, site.inner.bias
        x = torch.randn(1, 16, 24, dtype=torch.float64)
        for frame in range(200):
            eng.frame_id += 1
            eng.keyframe = frame == 0
            x = x + 0.01 * torch.randn_like(x)  # slow random walk: most deltas below th
            y = site(x)
            assert float((site.x_ref - x).abs().max()) < th
            torch.testing.assert_close(y, site.x_ref @ w.t() + b, rtol=0, atol=1e-10)
        kept = eng.ledger.nnz[(BASE_TASK, 0, "mlp.fc1", "TEMPORAL")]
        total = eng.ledger.numel[(BASE_TASK, 0, "mlp.fc1", "TEMPORAL")]
        assert 0 < kept < total
    finally:
        eng.remove()


def test_ledger_equals_formulas_and_flop_counter() -> None:
    base, subs = make_system(seeding.seed_for("test_ledger_equals_formulas_and_flop_counter", bits=13))
    frames = torch.rand(4, 2, 3, 16, 16, dtype=torch.float64)
    # Dense policy: executed MACs == FlopCounterMode of the four models minus shared embeds.
    dense = Policy(depth=3, task_reuse=False, temporal=False)
    with ReuseEngine(base, subs, dense) as eng:
        eng.run_frame(frames[0], keyframe=True)
    embed = dense_site_macs(16, 48, 24)
    expected = flop_counter_macs(base, BASE_TASK) + sum(
        flop_counter_macs(m, t) - embed for t, m in subs.items())
    assert eng.ledger.total() == 2 * expected  # two images per frame
    # Reuse policy with thresholds: every site's MACs == the mode's formula on its nnz(d).
    ths = {t: [0.02, 0.05, 0.1] for t in [BASE_TASK, *subs]}
    policy = Policy(depth=3, keyframe_interval=2, boundaries={"depth": 1, "normals": 0,
                                                              "edges": -1}, thresholds=ths)
    with ReuseEngine(base, subs, policy) as eng:
        list(eng.run_clip(frames))
    shapes = {}
    for t, m in [(BASE_TASK, base), *subs.items()]:
        for b, s, mod in block_sites(m):
            nnz_dw = int(torch.count_nonzero(mod.effective_delta_weight())) if t != BASE_TASK else 0
            shapes[(t, b, s)] = (mod.out_features, nnz_dw)
    for key, macs in eng.ledger.macs.items():
        t, b, s, mode = key
        if b == EXTRAS_BLOCK:
            assert macs == 4 * 2 * (attention_core_macs(base) + head_macs(subs.get(t, base), t))
            continue
        if s == "patch_embed":
            continue
        out_dim, nnz_dw = shapes[(t, b, s)]
        nnz = eng.ledger.nnz[key]
        if mode == Mode.TASK.name:
            calls = eng.ledger.calls[key]
            assert macs == nnz * out_dim + 2 * 16 * calls * nnz_dw  # d W_b^T + x_k dW^T
        elif mode == Mode.TEMPORAL.name:
            assert macs == nnz * out_dim  # d (W_b + dW)^T: dW merged, no extra MACs
    assert eng.ledger.total() < 2 * expected * 4  # reuse saves MACs over 4 dense frames


def test_policy_validation_and_order_errors() -> None:
    with pytest.raises(ValueError, match="boundary"):
        Policy(depth=3, boundaries={"depth": 3})
    with pytest.raises(ValueError, match="thresholds"):
        Policy(depth=3, thresholds={"depth": [0.1]})
    base, subs = make_system(9)
    eng = ReuseEngine(base, subs, Policy(depth=3), count_dense_extras=False)
    eng.install()
    try:
        eng.frame_id += 1
        eng.keyframe = False
        with pytest.raises(RuntimeError, match="TEMPORAL without a keyframe"):
            _get(base.encoder.blocks[0], "attn.qkv")(torch.zeros(1, 16, 24, dtype=torch.float64))
        with pytest.raises(RuntimeError, match="before the base ran"):
            _get(subs["depth"].encoder.blocks[0], "attn.qkv")(
                torch.zeros(1, 16, 24, dtype=torch.float64))
    finally:
        eng.remove()


def test_fast_path_matches_sparse_execution() -> None:
    base, subs = make_system(seeding.seed_for("test_fast_path_matches_sparse_execution", bits=13))
    frames = torch.rand(4, 2, 3, 16, 16, dtype=torch.float64)
    ths = {t: [0.02, 0.05, 0.1] for t in [BASE_TASK, *subs]}
    policy = Policy(depth=3, keyframe_interval=2, thresholds=ths,
                    boundaries={"depth": 1, "normals": 0, "edges": -1})
    runs = {}
    for sparse in (True, False):
        with ReuseEngine(base, subs, policy, sparse_exec=sparse) as eng:
            runs[sparse] = (list(eng.run_clip(frames)), eng.ledger)
    for a, b in zip(runs[True][0], runs[False][0], strict=True):
        for t in a:
            torch.testing.assert_close(a[t], b[t], rtol=0, atol=1e-12)
    assert dict(runs[True][1].macs) == dict(runs[False][1].macs)
