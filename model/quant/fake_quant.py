"""Fake-quantised sites: range observers, straight-through rounding, per-output-channel
weight scales, and :class:`QuantSite`, which swaps in for every linear site and runs in
one of four modes: ``float`` (pass-through), ``observe`` (calibration), ``qat`` (fake-quant
with straight-through gradients) and ``int`` (the integer contract executed in torch:
int8 input, exact accumulation, int32 wrap, contract requantisation). In ``int`` mode a
site's integer input and output can be recorded: the golden model is held to them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from deltamtl.contract.formats import ACT_MAX, ACT_MIN
from deltamtl.model.export.quantized_model import SiteParams
from deltamtl.model.sharing.delta import DeltaLinear
from deltamtl.model.tasks import BASE_TASK, site_name
from torch import nn

W_QMAX = 127  # symmetric weights: [-127, 127] (W_b + dW_k stays inside int8)


MODES = ("float", "observe", "qat", "int")


# ---------------------------------------------------------------------------------------
# Observers and straight-through fake quantisation
# ---------------------------------------------------------------------------------------
class RangeObserver:
    """Running |x| range: the max over batches of a per-batch statistic (max or percentile)."""

    def __init__(self, percentile: float | None = None) -> None:
        if percentile is not None and not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
        self.percentile = percentile
        self.value = 0.0

    def update(self, x: torch.Tensor) -> None:
        a = x.detach().abs().flatten().float()
        if a.numel() == 0:
            return
        if self.percentile is None or self.percentile == 100:
            v = float(a.max())
        else:
            k = max(1, int(math.ceil(a.numel() * self.percentile / 100.0)))
            v = float(a.kthvalue(k).values)
        self.value = max(self.value, v)

    def scale(self, qmax: int = ACT_MAX) -> float:
        return max(self.value, 1e-8) / qmax


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """round (half to even, as the contract) with a straight-through gradient."""
    return x + (torch.round(x) - x).detach()


def fake_quant(x: torch.Tensor, scale: torch.Tensor | float, qmin: int, qmax: int) -> torch.Tensor:
    return torch.clamp(ste_round(x / scale), qmin, qmax) * scale


def weight_scales(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-output-channel scale so that every task's W_k AND its delta W_k - W_b fit int8.

    ``weights[0]`` is the base's. The delta term matters when W_k and W_b have opposite
    signs: |W_k - W_b| can reach twice max |W|, and dW must itself be int8.
    """
    wb = weights[0].detach()
    amax = torch.stack([w.detach().abs().amax(dim=1) for w in weights]
                       + [(w.detach() - wb).abs().amax(dim=1) for w in weights[1:]]).amax(dim=0)
    return torch.where(amax > 0, amax / W_QMAX, torch.ones_like(amax))


# ---------------------------------------------------------------------------------------
# The site module
# ---------------------------------------------------------------------------------------
class SiteGroup:
    """What one site shares across tasks: s_x, the observers and the tasks' QuantSites."""

    def __init__(self, layer: int, site: str, percentile: float | None) -> None:
        self.layer, self.site = layer, site
        self.members: dict[str, QuantSite] = {}
        self.in_obs = RangeObserver(percentile)
        self.out_obs: dict[str, RangeObserver] = {}
        self.percentile = percentile
        self.s_x: float | None = None
        self.s_y: dict[str, float] = {}

    def weight_scale(self) -> torch.Tensor:
        order = sorted(self.members, key=lambda t: t != BASE_TASK)  # base first
        return weight_scales([site_weights(self.members[t])[0] for t in order])


class QuantSite(nn.Module):
    """A site of one task under quantisation; see the module docstring for the modes."""

    def __init__(self, inner: nn.Module, task: str, group: SiteGroup) -> None:
        super().__init__()
        self.inner = inner
        self.task = task
        object.__setattr__(self, "_group", group)  # shared, not a submodule
        self.mode = "float"
        self.int_params: tuple[torch.Tensor, ...] | None = None  # set by bind_integer
        self.recorder: list | None = None  # (task, site name, x int8, y int8) when recording

    @property
    def group(self) -> SiteGroup:
        return self._group  # type: ignore[no-any-return]

    def bind_integer(self, sp: SiteParams) -> None:
        """Integer parameters of this task at this site (from the quantised model)."""
        self.int_params = (
            torch.from_numpy(sp.task_weight(self.task).astype(np.float64)),
            torch.from_numpy(sp.task_bias(self.task).astype(np.int64)),
            torch.from_numpy(sp.req_mult[self.task].astype(np.int64)),
            torch.from_numpy(sp.req_shift[self.task].astype(np.int64)),
            torch.tensor(np.float32(sp.s_x)),
            torch.tensor(np.float32(sp.s_y[self.task])),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.group
        if self.mode == "float":
            return self.inner(x)
        if self.mode == "observe":
            g.in_obs.update(x)
            y = self.inner(x)
            g.out_obs.setdefault(self.task, RangeObserver(g.percentile)).update(y)
            return y
        if self.mode == "qat":
            if g.s_x is None:
                raise RuntimeError(f"{site_name(g.layer, g.site)}: QAT before calibration")
            w, b = site_weights(self.inner)
            s_w = g.weight_scale().to(w.dtype)[:, None]
            xq = fake_quant(x, g.s_x, ACT_MIN, ACT_MAX)
            y = F.linear(xq, fake_quant(w, s_w, -W_QMAX, W_QMAX), b)
            return fake_quant(y, g.s_y[self.task], ACT_MIN, ACT_MAX)
        if self.mode == "int":
            return self._integer(x)
        raise ValueError(f"unknown QuantSite mode {self.mode!r}")

    @torch.no_grad()
    def _integer(self, x: torch.Tensor) -> torch.Tensor:
        if self.int_params is None:
            raise RuntimeError(f"{self.task} {site_name(self.group.layer, self.group.site)}: "
                               "integer mode before bind_integer")
        w, bias, mult, shift, s_x, s_y = self.int_params
        # float32 division then round-half-even: the contract's quantize_activation.
        q = torch.clamp(torch.round(x.float() / s_x), ACT_MIN, ACT_MAX)
        acc = (q.double() @ w.T).to(torch.int64) + bias  # exact: |acc| << 2^53
        acc = ((acc + (1 << 31)) % (1 << 32)) - (1 << 31)  # int32 wrap-around
        y = (acc * mult + (torch.ones_like(shift) << (shift - 1))) >> shift
        y = torch.clamp(y, ACT_MIN, ACT_MAX)
        if self.recorder is not None:
            name = site_name(self.group.layer, self.group.site)
            self.recorder.append((self.task, name, q.to(torch.int8).numpy().copy(),
                                  y.to(torch.int8).numpy().copy()))
        return (y.to(torch.float32) * s_y).to(x.dtype)


def site_weights(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Merged float (W_k, b_k) of a site module (nn.Linear, DeltaLinear or QuantSite)."""
    if isinstance(module, QuantSite):
        module = module.inner
    if isinstance(module, DeltaLinear):
        return module.task_weight(), module.task_bias()
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    raise TypeError(f"not a site module: {type(module).__name__}")
