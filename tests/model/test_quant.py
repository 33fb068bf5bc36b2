"""Quantisation: scales, int8 weights and deltas, requantisers, modes, QAT gradients, policy."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from deltamtl.contract.formats import REQ_MULT_MAX, WEIGHT_MAX, WEIGHT_MIN
from deltamtl.model.quant.assemble import random_multitask
from deltamtl.model.quant.fake_quant import RangeObserver, site_weights, ste_round
from deltamtl.model.quant.quantizer import Quantizer, integer_policy
from deltamtl.model.sharing.delta import DeltaLinear
from deltamtl.model.sharing.reuse import Policy
from deltamtl.model.tasks import BLOCK_SITES, site_order

from tests.helpers.seeding import SEED

pytestmark = pytest.mark.quant  # make test-quant

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def system() -> tuple:
    mt = random_multitask(SEED)
    q = Quantizer(mt)
    gen = torch.Generator().manual_seed(SEED)
    q.calibrate([torch.rand(4, 3, 16, 16, generator=gen) for _ in range(2)])
    qm = q.to_quantized()
    q.bind(qm)
    return mt, q, qm


def test_observer_max_and_percentile() -> None:
    x = torch.randn(10_000)
    full, pct = RangeObserver(None), RangeObserver(99.0)
    full.update(x)
    pct.update(x)
    assert full.value == pytest.approx(float(x.abs().max()))
    assert pct.value < full.value
    assert pct.value == pytest.approx(float(x.abs().quantile(0.99)), rel=1e-3)
    with pytest.raises(ValueError, match="percentile"):
        RangeObserver(0.0)


def test_one_input_scale_per_site_shared_by_tasks(system: tuple) -> None:
    mt, q, qm = system
    assert [(s.layer, s.site) for s in qm.sites] == site_order(qm.depth)
    for s in qm.sites:
        assert s.s_x > 0 and np.all(s.s_w > 0)
        tasks = qm.tasks if s.layer >= 0 else qm.tasks[:1]
        assert set(s.s_y) == set(tasks) == set(s.req_mult)
        group = q.groups[(s.layer, s.site)]
        assert set(group.members) == set(tasks)


def test_weights_deltas_and_biases_follow_the_contract(system: tuple) -> None:
    mt, q, qm = system
    for s in qm.sites:
        if s.layer < 0:
            continue
        g = q.groups[(s.layer, s.site)]
        wb, bb = site_weights(g.members["semseg"])
        np.testing.assert_allclose(s.w * s.s_w[:, None], wb.detach().double().numpy(),
                                   atol=float(s.s_w.max()) * 0.5 + 1e-12)
        acc_scale = s.s_x * s.s_w
        np.testing.assert_allclose(s.bias * acc_scale, bb.detach().double().numpy(), atol=float(acc_scale.max()))
        for task in qm.subtasks:
            inner = g.members[task].inner
            assert isinstance(inner, DeltaLinear)
            merged = s.task_weight(task)
            assert merged.min() >= WEIGHT_MIN and merged.max() <= WEIGHT_MAX
            assert s.dw[task].values.dtype == np.int8
            mask = inner.weight_delta.mask.numpy()
            dense = s.dw[task].to_dense(s.out_dim, s.in_dim)
            assert not np.any(dense[~mask]), "a masked (zero) float delta became a non-zero int8 delta"
            wk, bk = site_weights(g.members[task])
            np.testing.assert_allclose(merged * s.s_w[:, None], wk.detach().double().numpy(),
                                       atol=float(s.s_w.max()) * 1.5)
            np.testing.assert_allclose((s.bias.astype(np.int64) + s.db[task]) * acc_scale,
                                       bk.detach().double().numpy(), atol=float(acc_scale.max()) * 1.5)


def test_requantisers_approximate_the_real_multiplier(system: tuple) -> None:
    _, _, qm = system
    for s in qm.sites:
        for task, mult in s.req_mult.items():
            real = s.s_x * s.s_w / s.s_y[task]
            approx = mult.astype(np.float64) / 2.0 ** s.req_shift[task].astype(np.float64)
            assert np.all(mult <= REQ_MULT_MAX)
            np.testing.assert_allclose(approx, real, rtol=2.0**-13)


def test_integer_mode_tracks_float_model(system: tuple) -> None:
    mt, q, qm = system
    img = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(SEED + 1))
    with torch.no_grad():
        q.set_mode("float")
        ref = mt(img)
        q.set_mode("int")
        out = mt(img)
        q.set_mode("qat")
        fake = mt(img)
    q.set_mode("float")
    # Rounding budget: each int8 rounding on the path (the patch embedding and 4 sites per
    # block, docs/quantisation.md) is at most half an LSB, 1/254 of its tensor's range;
    # summed linearly that is (1 + 4 depth) / 254 (3.5 % at depth 2). The errors of random
    # inputs partly cancel, so the measured mean error is several times below it.
    budget = (1 + len(BLOCK_SITES) * qm.depth) / 254
    for t in mt.tasks:
        err = (out[t] - ref[t]).abs().mean() / ref[t].abs().mean()
        assert err < budget, (t, float(err), budget)
        err_fake = (fake[t] - ref[t]).abs().mean() / ref[t].abs().mean()
        assert err_fake < budget, (t, float(err_fake), budget)


def test_qat_straight_through_gradients() -> None:
    x = torch.tensor([0.4, 1.6, -2.5], requires_grad=True)
    ste_round(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(3))
    mt = random_multitask(SEED + 2)
    q = Quantizer(mt)
    q.calibrate([torch.rand(2, 3, 16, 16)])
    q.set_mode("qat")
    for p in mt.parameters():
        p.requires_grad_(True)
    out = mt(torch.rand(2, 3, 16, 16))
    sum(o.square().mean() for o in out.values()).backward()
    sub = mt.subs["depth"].encoder.blocks[0].attn.qkv.inner
    grad = sub.weight_delta.delta.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert not grad[~sub.weight_delta.mask].any(), "masked deltas must get no gradient"
    base_w = mt.base.encoder.blocks[1].mlp.fc2.inner.weight
    assert base_w.grad is not None and base_w.grad.abs().sum() > 0
    q.set_mode("float")


def test_modes_and_uncalibrated_errors() -> None:
    q = Quantizer(random_multitask(SEED + 3))
    with pytest.raises(ValueError, match="mode must be"):
        q.set_mode("int4")
    q.set_mode("qat")
    with pytest.raises(RuntimeError, match="QAT before calibration"):
        q.mt(torch.rand(1, 3, 16, 16))
    q.set_mode("float")
    with pytest.raises(RuntimeError, match="not calibrated"):
        q.to_quantized()
    q.remove()
    assert not any(type(m).__name__ == "QuantSite" for m in q.mt.modules())


def test_integer_policy_from_float_thresholds(system: tuple) -> None:
    _, q, qm = system
    depth = qm.depth
    fp = Policy(depth=depth, keyframe_interval=4, boundaries={"depth": 0},
                thresholds={"semseg": [0.0] * depth, "depth": [0.2] * depth})
    ip = integer_policy(fp, qm.sites, depth, 4, key_offset=6)
    assert ip.keyframe_interval == 4 and ip.key_offset == 2 and ip.boundaries == {"depth": 0}
    assert ip.thresholds["semseg"] == [1] * depth  # th 0 (keep all) -> lossless th 1
    for b in range(depth):
        sx = min(s.s_x for s in qm.sites if s.layer == b)
        assert ip.thresholds["depth"][b] == max(1, round(0.2 / sx))
    no_temporal = Policy(depth=depth, temporal=False)
    assert integer_policy(no_temporal, qm.sites, depth, 5, 0).keyframe_interval == 1


def test_sub_task_trained_on_another_base_is_refused(tmp_path) -> None:
    """dW only means something against the base it was trained on."""
    from deltamtl.model.checkpoint import CHECKPOINT_FORMAT, atomic_torch_save, load_checkpoint
    from deltamtl.model.config import load_config
    from deltamtl.model.quant.assemble import load_multitask
    from deltamtl.model.sharing.delta import GateConfig
    from deltamtl.model.sharing.subtasks import build_subtask_model
    from deltamtl.model.training.vit import build_model

    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny.yaml"),
                      ["model.img_size=32"])
    base_a, other, sub = tmp_path / "base.pt", tmp_path / "other_base.pt", tmp_path / "sub.pt"
    base = build_model(cfg, ("semseg",))
    common = {"format": CHECKPOINT_FORMAT, "optimizer": {}, "scheduler": {}, "step": 1,
              "recipe_state": {}, "rng": {}, "metrics": {}}
    for path in (base_a, other):
        atomic_torch_save({**common, "model": base.state_dict(), "config": cfg, "recipe": "st",
                           "task": "semseg", "tasks": ("semseg",)}, path)
    sub_cfg = {**cfg, "sharing": {**cfg["sharing"], "base_checkpoint": str(base_a)}}
    model = build_subtask_model(base, "depth", sub_cfg, GateConfig.from_sharing(cfg["sharing"]))
    atomic_torch_save({**common, "model": model.state_dict(), "config": sub_cfg,
                       "recipe": "step3", "task": "depth", "tasks": ("depth",)}, sub)
    cfg = load_checkpoint(sub)["config"]
    load_multitask(cfg, base_a, {"depth": sub})  # the pair it was trained as
    with pytest.raises(ValueError, match="trained against base"):
        load_multitask(cfg, other, {"depth": sub})
