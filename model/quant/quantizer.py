"""The quantiser: calibrate a :class:`~deltamtl.model.quant.assemble.MultiTask`, then
produce the :class:`~deltamtl.model.export.quantized_model.QuantizedModel` the bundle
holds (docs/quantisation.md).

Rules (rounding and requantisation from :mod:`deltamtl.contract.formats`):

* site input: int8, ONE scale s_x per site shared by every task (task deltas are then
  exact integer differences), s_x = calibrated |x| range / 127;
* weights: int8 symmetric per output channel, s_w[o] = max over the base and every
  sub-task of max_i |W_k[o, i]| / 127, so every task's merged weight W_b + dW_k is
  representable; dW_k = round(W_k / s_w) - W_b (zero wherever the float delta is masked);
* bias: int32 in the accumulator scale s_x * s_w[o]; a sub-task's bias delta
  db_k = round(b_k / (s_x s_w)) - round(b_b / (s_x s_w));
* output: per (task, site) scale s_y = calibrated output range / 127 and requantiser
  (mult, shift) = choose_requant(s_x * s_w / s_y);
* thresholds: float per (task, block) -> integer th = round(th / s_x) clamped to the
  contract's threshold range, with s_x the smallest input scale of the block's sites.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from deltamtl.contract.formats import TH_MAX, TH_MIN, choose_requant
from deltamtl.contract.jobs import CsrDelta
from deltamtl.model.export.quantized_model import QuantizedModel, ReusePolicy, SiteParams
from deltamtl.model.quant.assemble import MultiTask
from deltamtl.model.quant.fake_quant import (
    MODES,
    W_QMAX,
    QuantSite,
    RangeObserver,
    SiteGroup,
    site_weights,
)
from deltamtl.model.sharing.delta import DeltaLinear
from deltamtl.model.sharing.subtasks import _get, _set
from deltamtl.model.tasks import BASE_TASK, BLOCK_SITES, EMBED, site_name, site_order
from deltamtl.model.training.vit import MultiTaskViT
from torch import nn


class Quantizer:
    """Installs :class:`QuantSite` on every site of every task of a :class:`MultiTask`."""

    def __init__(self, mt: MultiTask, percentile: float | None = 99.99) -> None:
        self.mt = mt
        self.depth = len(mt.base.encoder.blocks)
        self.groups: dict[tuple[int, str], SiteGroup] = {}
        self._swapped: list[tuple[nn.Module, str, nn.Module]] = []
        self.percentile = percentile
        self.install()

    def install(self) -> None:
        if self._swapped:
            return
        base = self.mt.base
        g = self.groups.setdefault((-1, EMBED), SiteGroup(-1, EMBED, self.percentile))
        embed = QuantSite(base.encoder.patch_embed, BASE_TASK, g)
        g.members = {BASE_TASK: embed}
        for task in self.mt.tasks:  # the embedding object is shared: one QuantSite for all
            self._swap(self.mt.model_of(task), "encoder.patch_embed", embed)
        for layer in range(self.depth):
            for site in BLOCK_SITES:
                g = self.groups.setdefault((layer, site), SiteGroup(layer, site, self.percentile))
                for task in self.mt.tasks:
                    model = self.mt.model_of(task)
                    qs = QuantSite(_get(model.encoder.blocks[layer], site), task, g)
                    g.members[task] = qs
                    self._swap(model.encoder.blocks[layer], site, qs)

    def _swap(self, owner: nn.Module, dotted: str, new: nn.Module) -> None:
        self._swapped.append((owner, dotted, _get(owner, dotted)))
        _set(owner, dotted, new)

    def remove(self) -> None:
        for owner, dotted, original in reversed(self._swapped):
            _set(owner, dotted, original)
        self._swapped.clear()

    def sites(self) -> Iterator[QuantSite]:
        seen: set[int] = set()
        for g in self.groups.values():
            for qs in g.members.values():
                if id(qs) not in seen:
                    seen.add(id(qs))
                    yield qs

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for qs in self.sites():
            qs.mode = mode

    # -- calibration ------------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, images: Iterable[torch.Tensor]) -> int:
        """Observe site input/output ranges of every task on batches of images [B,3,H,W]."""
        for g in self.groups.values():
            g.in_obs, g.out_obs = RangeObserver(self.percentile), {}
        self.set_mode("observe")
        n = 0
        try:
            for batch in images:
                self.mt(batch)
                n += int(batch.shape[0])
        finally:
            self.set_mode("float")
        if n == 0:
            raise ValueError("calibrate: no calibration images")
        for g in self.groups.values():
            g.s_x = g.in_obs.scale()
            g.s_y = {t: o.scale() for t, o in g.out_obs.items()}
        return n

    # -- integer model ----------------------------------------------------------------
    @torch.no_grad()
    def to_quantized(self, float_policy: Any | None = None, keyframe_interval: int = 5,
                     key_offset: int = 0) -> QuantizedModel:
        """Integer model from the current float weights and calibrated scales."""
        sites: list[SiteParams] = []
        for layer, site in site_order(self.depth):
            g = self.groups[(layer, site)]
            if g.s_x is None:
                raise RuntimeError(f"{site_name(layer, site)}: not calibrated")
            sites.append(quantize_site(g, self.mt.tasks))
        host = {t: host_params(self.mt.model_of(t), t) for t in self.mt.tasks}
        mcfg = model_config(self.mt.base)
        policy = integer_policy(float_policy, sites, self.depth, keyframe_interval, key_offset)
        return QuantizedModel(mcfg=mcfg, tasks=self.mt.tasks, sites=sites, host=host, policy=policy)

    def bind(self, qm: QuantizedModel) -> None:
        """Give every QuantSite its integer parameters (for ``int`` mode)."""
        for (layer, site), g in self.groups.items():
            sp = qm.site(layer, site)
            for qs in g.members.values():
                qs.bind_integer(sp)

    @contextmanager
    def recording(self) -> Iterator[list]:
        """Record (task, site name, x int8, y int8) of every integer-mode site call."""
        log: list = []
        for qs in self.sites():
            qs.recorder = log
        try:
            yield log
        finally:
            for qs in self.sites():
                qs.recorder = None


def quantize_site(g: SiteGroup, tasks: Sequence[str]) -> SiteParams:
    """One site's integer parameters from its members' float weights and the group scales."""
    members = {t: g.members[t] for t in tasks if t in g.members}
    wb_f, bb_f = site_weights(members[BASE_TASK])
    s_w = g.weight_scale().double().numpy()
    s_x = float(np.float32(g.s_x))  # the scale as exported (float32) is the scale used
    acc_scale = s_x * s_w

    def qw(w: torch.Tensor) -> np.ndarray:
        return np.clip(np.rint(w.detach().double().numpy() / s_w[:, None]), -W_QMAX, W_QMAX).astype(np.int32)

    def qb(b: torch.Tensor | None) -> np.ndarray:
        if b is None:
            return np.zeros(len(s_w), np.int64)
        v = np.rint(b.detach().double().numpy() / acc_scale)
        return np.clip(v, -(2**31), 2**31 - 1).astype(np.int64)

    w_b, b_b = qw(wb_f), qb(bb_f)
    sp = SiteParams(layer=g.layer, site=g.site, s_x=s_x, s_w=s_w, w=w_b.astype(np.int8),
                    bias=b_b.astype(np.int32))
    for task, qs in members.items():
        if task != BASE_TASK:
            w_k, b_k = site_weights(qs)
            # |dW| <= 127 up to one rounding step (round(a) - round(b) with |a - b| <= 127)
            sp.dw[task] = CsrDelta.from_dense(np.clip(qw(w_k) - w_b, -W_QMAX, W_QMAX))
            sp.db[task] = (qb(b_k) - b_b).astype(np.int32)
        s_y = float(np.float32(g.s_y[task]))
        while True:  # an output range too small for the requantiser: widen it
            try:
                sp.req_mult[task], sp.req_shift[task] = choose_requant(acc_scale / s_y)
                break
            except ValueError:
                s_y = float(np.float32(s_y * 2.0))
        sp.s_y[task] = s_y
    return sp


def host_params(model: MultiTaskViT, task: str) -> dict[str, np.ndarray]:
    """float32 host-side parameters of one task (state-dict names, sites excluded)."""
    sd = {k: v for k, v in model.state_dict().items()}
    keep = {}
    for k, v in sd.items():
        if k in ("pixel_mean", "pixel_std", "encoder.pos_embed") or k.startswith(
            ("encoder.norm.", f"heads.{task}.")
        ) or (k.startswith("encoder.blocks.") and (".norm1." in k or ".norm2." in k)):
            keep[k] = v.detach().float().cpu().numpy().copy()
    return keep


def _inner(module: nn.Module) -> nn.Module:
    return module.inner if isinstance(module, QuantSite) else module


def model_config(model: MultiTaskViT) -> dict:
    """The ``model`` config section reconstructed from a model (all the runner needs)."""
    enc = model.encoder
    blk = enc.blocks[0]
    dim = int(enc.pos_embed.shape[2])
    fc1, qkv = _inner(_get(blk, "mlp.fc1")), _inner(_get(blk, "attn.qkv"))
    qkv_bias = (qkv.base.bias if isinstance(qkv, DeltaLinear) else qkv.bias) is not None
    head = next(iter(model.heads.values()))
    return {
        "img_size": int(model.img_size),
        "patch_size": int(enc.patch_size),
        "embed_dim": dim,
        "depth": len(enc.blocks),
        "num_heads": int(blk.attn.num_heads),
        "mlp_ratio": float(fc1.out_features) / dim,
        "qkv_bias": bool(qkv_bias),
        "ln_eps": float(blk.norm1.eps),
        "num_classes": int(model.num_classes),
        "head_channels": int(head.channels),
        "head_convs": sum(isinstance(m, nn.Conv2d) for m in head.modules()),
        "pixel_mean": [float(v) for v in model.pixel_mean.flatten()],
        "pixel_std": [float(v) for v in model.pixel_std.flatten()],
    }


def integer_policy(float_policy: Any | None, sites: Sequence[SiteParams], depth: int,
                   keyframe_interval: int, key_offset: int) -> ReusePolicy:
    """Float thresholds (a reuse.Policy or None: lossless th = 1) -> integer policy."""
    if float_policy is None:
        return ReusePolicy(depth=depth, keyframe_interval=keyframe_interval, key_offset=key_offset)
    min_sx = [min(s.s_x for s in sites if s.layer == b) for b in range(depth)]
    ths = {t: [int(min(TH_MAX, max(TH_MIN, round(float(v) / min_sx[b])))) for b, v in enumerate(vals)]
           for t, vals in float_policy.thresholds.items()}
    k = int(float_policy.keyframe_interval) if float_policy.temporal else 1
    return ReusePolicy(depth=depth, keyframe_interval=k, key_offset=key_offset % k,
                       task_reuse=bool(float_policy.task_reuse), thresholds=ths,
                       boundaries={t: int(b) for t, b in float_policy.boundaries.items()})
