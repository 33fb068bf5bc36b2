"""Hard-Concrete gates and DeltaLinear: probabilities, masks, sharing of base weights."""

from __future__ import annotations

import math

import pytest
import torch
from deltamtl.model.sharing.delta import (
    DeltaLinear,
    GateConfig,
    HardConcreteGate,
    enforce_masks,
    expected_l0,
    fix_masks,
)
from torch import nn

pytestmark = pytest.mark.sharing  # make test-sharing


def test_gate_probability_matches_monte_carlo() -> None:
    torch.manual_seed(0)
    cfg = GateConfig()
    gate = HardConcreteGate((2000,), cfg)
    with torch.no_grad():
        gate.log_alpha.uniform_(-3.0, 3.0)
    draws = torch.stack([gate.sample() for _ in range(400)])
    empirical = (draws > 0).float().mean(0)
    assert torch.allclose(empirical, gate.prob_nonzero().detach(), atol=0.09)
    # The mean over many gates is much tighter than per gate.
    assert abs(float(empirical.mean() - gate.prob_nonzero().detach().mean())) < 0.01
    assert float(draws.min()) >= 0.0 and float(draws.max()) <= 1.0


def test_gate_closed_forms() -> None:
    cfg = GateConfig(temperature=0.66, limit_l=-0.1, limit_r=1.1, log_alpha_init=1.3)
    gate = HardConcreteGate((3,), cfg)
    la = 1.3
    assert torch.allclose(gate.prob_nonzero(),
                          torch.full((3,), 1 / (1 + math.exp(-(la - 0.66 * math.log(0.1 / 1.1))))))
    det = min(1.0, max(0.0, 1 / (1 + math.exp(-la)) * 1.2 - 0.1))
    assert torch.allclose(gate.deterministic(), torch.full((3,), det))


def test_gate_config_errors_and_reading() -> None:
    with pytest.raises(ValueError, match="stretch"):
        GateConfig(limit_l=0.1)
    with pytest.raises(ValueError, match="temperature"):
        GateConfig(temperature=0)
    with pytest.raises(ValueError, match="sharing.hard_concrete.bogus"):
        GateConfig.from_sharing({"hard_concrete": {"bogus": 1}})
    cfg = GateConfig.from_sharing({"hard_concrete": {"temperature": 0.5, "stretch_low": -0.2,
                                                      "stretch_high": 1.2, "log_alpha_init": 2,
                                                      "per_tensor_gate": False}})
    assert cfg == GateConfig(0.5, -0.2, 1.2, 2.0, False)


def _random_linear(seed: int, i: int = 7, o: int = 5) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(i, o)


def test_delta_linear_zero_delta_equals_base_and_base_not_owned() -> None:
    base = _random_linear(1)
    dl = DeltaLinear(base, GateConfig()).eval()
    x = torch.randn(4, 3, 7)
    assert torch.equal(dl(x), base(x))
    names = [n for n, _ in dl.named_parameters()]
    assert not any(n.startswith("base") or n in ("weight", "bias") for n in names)
    assert all("delta" in n for n in dl.state_dict())
    # base parameters receive no gradient through the delta layer
    dl.train()
    dl(x).sum().backward()
    assert base.weight.grad is None


def test_expected_l0_counts_elements_times_tensor_gate() -> None:
    base = _random_linear(2)
    cfg = GateConfig()
    dl = DeltaLinear(base, cfg)
    wrapper = nn.Sequential(dl)
    p = torch.sigmoid(torch.tensor(cfg.log_alpha_init))  # log(-l/r) = 0 for symmetric limits
    assert torch.allclose(expected_l0(wrapper), (5 * 7 + 5) * p * p)
    with pytest.raises(ValueError, match="no DeltaLinear"):
        expected_l0(nn.Sequential(nn.Linear(2, 2)))


def test_fix_mask_is_deterministic_and_preserves_function() -> None:
    torch.manual_seed(3)
    base = _random_linear(3)
    dl = DeltaLinear(base, GateConfig())
    with torch.no_grad():
        dl.weight_delta.delta.normal_()
        dl.bias_delta.delta.normal_()
        dl.weight_delta.element_gate.log_alpha.uniform_(-2, 2)
        dl.bias_delta.element_gate.log_alpha.uniform_(-2, 2)
    dl.eval()
    x = torch.randn(6, 7)
    before = dl(x)
    z = dl.weight_delta.element_gate.deterministic() * dl.weight_delta.tensor_gate.deterministic()
    fix_masks(nn.Sequential(dl))
    assert torch.equal(dl.weight_delta.mask, z > 0)
    assert torch.allclose(dl(x), before, atol=1e-6)
    assert torch.all(dl.weight_delta.delta[~dl.weight_delta.mask] == 0)
    # The phase and mask survive a state_dict round trip.
    dl2 = DeltaLinear(base, GateConfig())
    dl2.load_state_dict(dl.state_dict())
    assert dl2.fixed and torch.equal(dl2.weight_delta.mask, dl.weight_delta.mask)
    assert not dl2.weight_delta.element_gate.log_alpha.requires_grad
    assert torch.equal(dl2.eval()(x), dl(x))
    assert float(expected_l0(nn.Sequential(dl))) == 0.0


def _gated_pair(seed: int) -> tuple[nn.Sequential, list[DeltaLinear]]:
    """Two delta layers with random deltas, element gates and tensor gates."""
    torch.manual_seed(seed)
    layers = [DeltaLinear(_random_linear(seed + k, 9, 6), GateConfig()) for k in range(2)]
    with torch.no_grad():
        for dl in layers:
            for d in (dl.weight_delta, dl.bias_delta):
                d.delta.normal_()
                d.element_gate.log_alpha.uniform_(-3, 3)
                d.tensor_gate.log_alpha.fill_(float(torch.empty(()).uniform_(0.5, 3)))
    return nn.Sequential(*layers), layers


def _score_and_mask(layers: list[DeltaLinear]) -> tuple[torch.Tensor, torch.Tensor]:
    deltas = [d for dl in layers for d in (dl.weight_delta, dl.bias_delta)]
    score = torch.cat([(d.element_gate.prob_nonzero() * d.tensor_gate.prob_nonzero()).flatten()
                       for d in deltas])
    mask = torch.cat([d.mask.flatten() for d in deltas])
    return score.detach(), mask


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_capped_fix_keeps_the_most_probable_entries(seed: int) -> None:
    model, layers = _gated_pair(seed)
    uncapped, _ = _gated_pair(seed)
    wanted, kept = fix_masks(uncapped)
    assert wanted == kept == sum(dl.nnz() for dl in uncapped)
    _, open_mask = _score_and_mask(list(uncapped))
    cap = int(torch.randint(1, wanted, ()).item())
    x = torch.randn(4, 9)
    assert fix_masks(model, max_nnz=cap) == (wanted, cap)
    score, mask = _score_and_mask(layers)
    assert int(mask.sum()) == cap == sum(dl.nnz() for dl in layers)
    assert torch.all(open_mask[mask])  # the cap only removes entries the gates keep
    # every kept entry is at least as probable as every dropped open entry
    dropped = open_mask & ~mask
    assert score[mask].min() >= score[dropped].max()
    for dl in layers:
        for d in (dl.weight_delta, dl.bias_delta):
            assert d.fixed and torch.all(d.delta[~d.mask] == 0)
    # the capped layer is the uncapped one with the dropped deltas removed
    for a, b in zip(layers, uncapped, strict=True):
        w = a.base.weight + b.weight_delta.delta * a.weight_delta.mask
        bias = a.base.bias + b.bias_delta.delta * a.bias_delta.mask
        assert torch.allclose(a.eval()(x), torch.nn.functional.linear(x, w, bias), atol=1e-6)


def test_cap_above_the_gates_count_changes_nothing_and_bad_caps_are_named() -> None:
    model, layers = _gated_pair(8)
    ref, ref_layers = _gated_pair(8)
    wanted, _ = fix_masks(ref)
    assert fix_masks(model, max_nnz=wanted + 10) == (wanted, wanted)
    for a, b in zip(layers, ref_layers, strict=True):
        assert torch.equal(a.weight_delta.mask, b.weight_delta.mask)
        assert torch.equal(a.bias_delta.mask, b.bias_delta.mask)
    assert fix_masks(model, max_nnz=0) == (0, 0)  # already fixed: nothing left to fix
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="max_nnz must be a non-negative integer"):
            fix_masks(_gated_pair(9)[0], max_nnz=bad)


def test_masked_deltas_stay_exactly_zero_under_adamw() -> None:
    torch.manual_seed(4)
    dl = DeltaLinear(_random_linear(4), GateConfig())
    with torch.no_grad():
        dl.weight_delta.element_gate.log_alpha.copy_(torch.randn(5, 7) * 3)
    dl.fix_mask()
    mask = dl.weight_delta.mask.clone()
    opt = torch.optim.AdamW([p for p in dl.parameters() if p.requires_grad], lr=0.1,
                            weight_decay=0.1)
    for _ in range(5):
        opt.zero_grad()
        dl(torch.randn(8, 7)).pow(2).sum().backward()
        opt.step()
    assert torch.equal(dl.weight_delta.mask, mask)
    assert torch.all(dl.weight_delta.delta[~mask] == 0)
    assert torch.any(dl.weight_delta.delta[mask] != 0)
    enforce_masks(nn.Sequential(dl))  # idempotent on a clean model
    assert torch.all(dl.weight_delta.delta[~mask] == 0)


def test_delta_linear_rejects_non_linear() -> None:
    with pytest.raises(TypeError, match="nn.Linear"):
        DeltaLinear(nn.Conv2d(1, 1, 1), GateConfig())  # type: ignore[arg-type]
