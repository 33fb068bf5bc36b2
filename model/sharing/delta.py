"""Delta weights for sub-task linear layers: W_k = W_b + mask * dW (Diff-pruning).

The base layer's weight and bias are referenced, never copied or trained: a sub-task's
:class:`DeltaLinear` holds the base ``nn.Linear`` and learns only ``delta_weight`` /
``delta_bias`` plus their Hard-Concrete gates. Each delta tensor has a per-element gate
and a per-tensor gate (Guo et al., 2021); its mask is their product.

Gate (Louizos et al., 2018), with temperature beta and stretch limits (l, r):

* training sample:  s = sigmoid((log u - log(1-u) + log_alpha) / beta), u ~ U(0, 1)
                    z = clamp(s * (r - l) + l, 0, 1)
* deterministic:    z = clamp(sigmoid(log_alpha) * (r - l) + l, 0, 1)
* P(z != 0) = sigmoid(log_alpha - beta * log(-l / r))

The expected L0 of a delta tensor is the sum over its elements of
P(element gate != 0) * P(tensor gate != 0), i.e. the expected number of non-zero mask
entries. Two phases:

* gated (step 1): stochastic gates in train(), deterministic gates in eval();
* fixed (steps 2, 3, after :meth:`DeltaLinear.fix_mask`): binary mask frozen from the
  deterministic gates; the
  deterministic gate value is folded into the delta so the function does not jump, and
  masked deltas are zeroed exactly and kept zero by :meth:`DeltaLinear.enforce_mask`.

:func:`fix_masks` may cap the number of kept entries (``max_nnz``): where the deterministic
gates keep more, only the entries most likely to be non-zero (element probability times
tensor probability) survive. The L0 penalty sets the count only loosely (at one lambda_w
two seeds kept 141 K and 105 K normals deltas); the cap makes a parameter budget exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-6


@dataclass(frozen=True)
class GateConfig:
    """Hard-Concrete constants (Diff-pruning defaults); read from the config's sharing section."""

    temperature: float = 1.0
    limit_l: float = -1.5
    limit_r: float = 1.5
    log_alpha_init: float = 5.0
    per_tensor_gate: bool = True

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"sharing.temperature must be > 0, got {self.temperature!r}")
        if not (self.limit_l < 0 < 1 < self.limit_r):
            raise ValueError(
                f"sharing.stretch limits must satisfy l < 0 < 1 < r, got "
                f"({self.limit_l!r}, {self.limit_r!r})"
            )

    @classmethod
    def from_sharing(cls, sharing: dict[str, Any] | None) -> GateConfig:
        """Build from a config's ``sharing.hard_concrete`` mapping; absent keys keep defaults."""
        hc = dict((sharing or {}).get("hard_concrete") or {})
        unknown = sorted(set(hc) - {"temperature", "stretch_low", "stretch_high",
                                    "log_alpha_init", "per_tensor_gate"})
        if unknown:
            raise ValueError(f"sharing.hard_concrete.{unknown[0]}: unknown key")
        return cls(
            temperature=float(hc.get("temperature", cls.temperature)),
            limit_l=float(hc.get("stretch_low", cls.limit_l)),
            limit_r=float(hc.get("stretch_high", cls.limit_r)),
            log_alpha_init=float(hc.get("log_alpha_init", cls.log_alpha_init)),
            per_tensor_gate=bool(hc.get("per_tensor_gate", cls.per_tensor_gate)),
        )


class HardConcreteGate(nn.Module):
    """A tensor of stretched Hard-Concrete gates with learnable log-alpha."""

    def __init__(self, shape: tuple[int, ...] | torch.Size, cfg: GateConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.log_alpha = nn.Parameter(torch.full(tuple(shape), cfg.log_alpha_init))

    def _stretch(self, s: torch.Tensor) -> torch.Tensor:
        return (s * (self.cfg.limit_r - self.cfg.limit_l) + self.cfg.limit_l).clamp(0.0, 1.0)

    def sample(self) -> torch.Tensor:
        u = torch.rand_like(self.log_alpha).clamp(_EPS, 1.0 - _EPS)
        logits = (torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.cfg.temperature
        return self._stretch(torch.sigmoid(logits))

    def deterministic(self) -> torch.Tensor:
        return self._stretch(torch.sigmoid(self.log_alpha))

    def forward(self) -> torch.Tensor:
        return self.sample() if self.training else self.deterministic()

    def prob_nonzero(self) -> torch.Tensor:
        shift = self.cfg.temperature * math.log(-self.cfg.limit_l / self.cfg.limit_r)
        return torch.sigmoid(self.log_alpha - shift)


class GatedDelta(nn.Module):
    """One delta tensor with its per-element and per-tensor gates (and, once fixed, its mask)."""

    def __init__(self, shape: tuple[int, ...] | torch.Size, cfg: GateConfig,
                 dtype: torch.dtype, device: torch.device | None) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(tuple(shape), dtype=dtype, device=device))
        self.element_gate = HardConcreteGate(shape, cfg)
        # Without a per-tensor gate the tensor gate is absent and counts as always open.
        self.tensor_gate = HardConcreteGate((1,), cfg) if cfg.per_tensor_gate else None
        self.register_buffer("mask", torch.ones(tuple(shape), dtype=torch.bool, device=device))
        # A buffer, so that checkpoints written after fix() restore the phase.
        self.register_buffer("is_fixed", torch.tensor(False, device=device))

    @property
    def fixed(self) -> bool:
        return bool(self.is_fixed)

    def effective(self) -> torch.Tensor:
        """The delta as added to the base: gated (phase l0) or masked (phase fixed)."""
        if self.fixed:
            return self.delta * self.mask
        return self.delta * self._gate_value(sample=self.training)

    def expected_l0(self) -> torch.Tensor:
        if self.fixed:
            return self.delta.new_zeros(())
        return self.keep_score().sum()

    def _gates(self) -> list[HardConcreteGate]:
        return [g for g in (self.element_gate, self.tensor_gate) if g is not None]

    def _gate_value(self, sample: bool) -> torch.Tensor:
        z = self.element_gate.sample() if sample else self.element_gate.deterministic()
        if self.tensor_gate is not None:
            z = z * (self.tensor_gate.sample() if sample else self.tensor_gate.deterministic())
        return z

    def keep_score(self) -> torch.Tensor:
        """P(mask entry != 0) per element: the order in which a capped fix keeps entries."""
        p = self.element_gate.prob_nonzero()
        if self.tensor_gate is not None:
            p = p * self.tensor_gate.prob_nonzero()
        return p

    @torch.no_grad()
    def fix(self, keep: torch.Tensor | None = None) -> None:
        """Freeze the mask from the deterministic gates (never from a random sample);
        ``keep`` (bool, the delta's shape) can only remove entries from it."""
        if self.fixed:
            return
        z = self._gate_value(sample=False)
        if keep is not None:
            z = z * keep.to(z.dtype)
        self.mask.copy_(z > 0)
        self.delta.mul_(z.to(self.delta.dtype))  # fold the gate value: same function after fixing
        self.delta.masked_fill_(~self.mask, 0.0)
        for gate in self._gates():
            gate.log_alpha.requires_grad_(False)
        self.is_fixed.fill_(True)

    @torch.no_grad()
    def enforce_mask(self) -> None:
        if self.fixed:
            self.delta.masked_fill_(~self.mask, 0.0)

    def nnz(self) -> int:
        """Non-zero stored deltas (phase fixed) or entries with a non-zero deterministic gate."""
        if self.fixed:
            return int(torch.count_nonzero(self.delta * self.mask))
        with torch.no_grad():
            z = self._gate_value(sample=False)
        return int(torch.count_nonzero(z))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.fixed:  # a checkpoint written after fix(): gates stay frozen
            for gate in self._gates():
                gate.log_alpha.requires_grad_(False)


class DeltaLinear(nn.Module):
    """A sub-task linear site: y = x (W_b + m_w * dW)^T + (b_b + m_b * db).

    ``base`` is the base task's ``nn.Linear``; its parameters are shared (same tensors) and
    are never updated through this module (they are detached in the forward pass).
    """

    def __init__(self, base: nn.Linear, cfg: GateConfig) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"DeltaLinear wraps nn.Linear, got {type(base).__name__}")
        # Kept out of the module tree so the sub-task's parameters() and state_dict() hold
        # only what the sub-task owns; the base is saved with the base model.
        object.__setattr__(self, "_base", base)
        self.in_features = base.in_features
        self.out_features = base.out_features
        w = base.weight
        self.weight_delta = GatedDelta(w.shape, cfg, w.dtype, w.device)
        self.bias_delta = (
            GatedDelta(base.bias.shape, cfg, w.dtype, w.device) if base.bias is not None else None
        )

    @property
    def base(self) -> nn.Linear:
        return self._base  # type: ignore[no-any-return]

    def set_base(self, base: nn.Linear) -> None:
        if (base.in_features, base.out_features) != (self.in_features, self.out_features):
            raise ValueError(
                f"base linear is {base.in_features}->{base.out_features}, delta site is "
                f"{self.in_features}->{self.out_features}"
            )
        object.__setattr__(self, "_base", base)

    def _deltas(self) -> list[GatedDelta]:
        return [d for d in (self.weight_delta, self.bias_delta) if d is not None]

    def effective_delta_weight(self) -> torch.Tensor:
        return self.weight_delta.effective()

    def effective_delta_bias(self) -> torch.Tensor | None:
        return self.bias_delta.effective() if self.bias_delta is not None else None

    def task_weight(self) -> torch.Tensor:
        return self.base.weight.detach() + self.effective_delta_weight()

    def task_bias(self) -> torch.Tensor | None:
        if self.base.bias is None:
            return None
        return self.base.bias.detach() + self.effective_delta_bias()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.task_weight(), self.task_bias())

    def expected_l0(self) -> torch.Tensor:
        return sum((d.expected_l0() for d in self._deltas()), self.base.weight.new_zeros(()))

    def fix_mask(self) -> None:
        for d in self._deltas():
            d.fix()

    def gated_deltas(self) -> list[GatedDelta]:
        return self._deltas()

    def enforce_mask(self) -> None:
        for d in self._deltas():
            d.enforce_mask()

    @property
    def fixed(self) -> bool:
        return self.weight_delta.fixed

    def numel(self) -> int:
        return sum(d.delta.numel() for d in self._deltas())

    def nnz(self) -> int:
        return sum(d.nnz() for d in self._deltas())

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, fixed={self.fixed}"


def delta_modules(model: nn.Module) -> list[tuple[str, DeltaLinear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DeltaLinear)]


def expected_l0(model: nn.Module) -> torch.Tensor:
    """Sum of expected non-zero delta entries over every DeltaLinear in ``model``."""
    terms = [m.expected_l0() for _, m in delta_modules(model)]
    if not terms:
        raise ValueError("expected_l0: the model has no DeltaLinear sites (attach deltas first)")
    return torch.stack(terms).sum()


def fix_masks(model: nn.Module, max_nnz: int | None = None) -> tuple[int, int]:
    """Fix every mask from the deterministic gates; with ``max_nnz``, keep at most that many
    entries over the whole model, the most probable first. Returns (entries the gates
    keep, entries kept). Already fixed masks are left as they are."""
    if max_nnz is not None and (isinstance(max_nnz, bool) or not isinstance(max_nnz, int)
                                or max_nnz < 0):
        raise ValueError(f"fix_masks: max_nnz must be a non-negative integer, got {max_nnz!r}")
    deltas = [d for _, m in delta_modules(model) for d in m.gated_deltas() if not d.fixed]
    with torch.no_grad():
        open_ = [d._gate_value(sample=False) > 0 for d in deltas]
    wanted = int(sum(int(o.sum()) for o in open_))
    keeps: list[torch.Tensor | None] = [None] * len(deltas)
    if max_nnz is not None and wanted > max_nnz:
        with torch.no_grad():
            scores = torch.cat([torch.where(o, d.keep_score(), torch.zeros_like(d.keep_score()))
                                .flatten() for d, o in zip(deltas, open_, strict=True)])
            kept = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
            kept[torch.topk(scores, max_nnz, sorted=False).indices] = True
        start = 0
        for i, d in enumerate(deltas):
            n = d.delta.numel()
            keeps[i] = kept[start:start + n].view_as(d.delta) & open_[i]
            start += n
    for d, keep in zip(deltas, keeps, strict=True):
        d.fix(keep)
    return wanted, min(wanted, max_nnz) if max_nnz is not None else wanted


def enforce_masks(model: nn.Module) -> None:
    for _, m in delta_modules(model):
        m.enforce_mask()
