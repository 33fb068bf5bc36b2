"""Int8 quantisation of the delta-shared multi-task ViT to the integer contract.

Rules (BRIEF section 3; rounding and requantisation from :mod:`deltamtl.contract`):

* site input: int8, ONE scale s_x per site shared by every task (task deltas are then
  exact integer differences), s_x = calibrated |x| range / 127;
* weights: int8 symmetric per output channel, s_w[o] = max over the base and every
  sub-task of max_i |W_k[o, i]| / 127, so every task's merged weight W_b + dW_k is
  representable; W_b = round(W_b / s_w), dW_k = round(W_k / s_w) - W_b (zero wherever the
  float delta is masked, since then W_k == W_b);
* bias: int32 in the accumulator scale s_x * s_w[o]; a sub-task's bias delta
  db_k = round(b_k / (s_x s_w)) - round(b_b / (s_x s_w));
* output: per (task, site) scale s_y = calibrated output range / 127 and requantiser
  (mult, shift) = choose_requant(s_x * s_w / s_y);
* thresholds: float per (task, block) -> integer th = max(1, round(th / s_x)) with s_x
  the smallest input scale of the block's sites (so th never grows beyond the float one).

The multi-task model is :class:`MultiTask`: the dense base (semseg) plus sub-task models
built by :mod:`deltamtl.model.sharing` (shared embeddings, DeltaLinear block sites, own
LayerNorms and heads). :class:`QuantSite` swaps in for every site and runs in one of four
modes: ``float`` (pass-through), ``observe`` (calibration), ``qat`` (fake-quant with
straight-through gradients) and ``int`` (the integer contract executed in torch: int8
input, exact int64 accumulation, int32 wrap, contract requantisation, dequantised output);
in ``int`` mode the site's integer input/output can be recorded, which is what the golden
model is held to bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from deltamtl.model.delta import DeltaLinear, GateConfig
from deltamtl.model.golden import (
    BASE_TASK,
    BLOCK_SITES,
    EMBED,
    QuantizedModel,
    ReusePolicy,
    SiteParams,
    site_name,
    site_order,
)
from deltamtl.model.golden_core import CsrDelta
from deltamtl.model.sharing import _get, _set, build_subtask_model
from deltamtl.model.vit import MultiTaskViT
from torch import nn

from deltamtl.contract import ACT_MAX, ACT_MIN, choose_requant

W_QMAX = 127  # symmetric weights: [-127, 127] (W_b + dW_k stays inside int8)
MODES = ("float", "observe", "qat", "int")


# ---------------------------------------------------------------------------------------
# The multi-task model container
# ---------------------------------------------------------------------------------------
class MultiTask(nn.Module):
    """Base (semseg) + sub-task models; ``forward(images, task)`` -> {task: output}."""

    def __init__(self, base: MultiTaskViT, subs: Mapping[str, MultiTaskViT]) -> None:
        super().__init__()
        if BASE_TASK not in base.heads:
            raise ValueError(f"the base model has no {BASE_TASK!r} head (it has {base.tasks})")
        self.base = base
        self.subs = nn.ModuleDict(dict(subs))
        self.num_classes = base.num_classes

    @property
    def tasks(self) -> tuple[str, ...]:
        return (BASE_TASK,) + tuple(self.subs.keys())

    def model_of(self, task: str) -> MultiTaskViT:
        return self.base if task == BASE_TASK else self.subs[task]

    def forward(self, images: torch.Tensor, task: str | Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = self.tasks if task is None else ((task,) if isinstance(task, str) else tuple(task))
        out: dict[str, torch.Tensor] = {}
        for t in wanted:
            if t not in self.tasks:
                raise KeyError(f"no task {t!r}; the model has {self.tasks}")
            out[t] = self.model_of(t)(images, task=t)[t]
        return out


def task_site_module(model: MultiTaskViT, layer: int, site: str) -> nn.Module:
    return model.encoder.patch_embed if layer < 0 else _get(model.encoder.blocks[layer], site)


def site_weights(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Merged float (W_k, b_k) of a site module (nn.Linear, DeltaLinear or QuantSite)."""
    if isinstance(module, QuantSite):
        module = module.inner
    if isinstance(module, DeltaLinear):
        return module.task_weight(), module.task_bias()
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    raise TypeError(f"not a site module: {type(module).__name__}")


def load_multitask(cfg: dict, base_ckpt: str | Path, sub_ckpts: Mapping[str, str | Path]) -> MultiTask:
    """Trained model from the base checkpoint and each sub-task's step-3 checkpoint."""
    from deltamtl.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(base_ckpt)
    base = MultiTaskViT(ckpt["config"], tuple(ckpt["tasks"]))
    base.load_state_dict(ckpt["model"])
    gate_cfg = GateConfig.from_sharing(cfg.get("sharing"))
    subs = {}
    for task, path in sub_ckpts.items():
        sck = load_checkpoint(path)
        if sck.get("task") != task:
            raise ValueError(f"{path}: checkpoint is for task {sck.get('task')!r}, expected {task!r}")
        # dW is a delta against one particular base: pairing it with another is meaningless
        trained_on = (sck["config"].get("sharing") or {}).get("base_checkpoint")
        if trained_on is None or Path(trained_on).resolve() != Path(base_ckpt).resolve():
            raise ValueError(
                f"{path}: sub-task {task!r} was trained against base {trained_on!r}, "
                f"not {str(base_ckpt)!r}; its delta weights do not apply to this base"
            )
        sub = build_subtask_model(base, task, sck["config"], gate_cfg)
        sub.load_state_dict(sck["model"])
        subs[task] = sub
    return MultiTask(base, subs).eval()


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
    ths = {t: [int(min(255, max(1, round(float(v) / min_sx[b])))) for b, v in enumerate(vals)]
           for t, vals in float_policy.thresholds.items()}
    k = int(float_policy.keyframe_interval) if float_policy.temporal else 1
    return ReusePolicy(depth=depth, keyframe_interval=k, key_offset=key_offset % k,
                       task_reuse=bool(float_policy.task_reuse), thresholds=ths,
                       boundaries={t: int(b) for t, b in float_policy.boundaries.items()})


# ---------------------------------------------------------------------------------------
# Small random multi-task models (tests, demos without a trained checkpoint)
# ---------------------------------------------------------------------------------------
SMALL_MODEL: dict[str, Any] = {
    "img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 2,
    "mlp_ratio": 2.0, "qkv_bias": True, "ln_eps": 1e-6, "num_classes": 5,
    "head_channels": 4, "head_convs": 2, "pixel_mean": [0.5, 0.5, 0.5],
    "pixel_std": [0.25, 0.25, 0.25], "depth_init_m": 3.0,
}


@torch.no_grad()
def random_multitask(seed: int, mcfg: Mapping[str, Any] | None = None, density: float = 0.2,
                     subtasks: Sequence[str] = ("depth", "normals", "edges")) -> MultiTask:
    """A random base and sub-task models with random sparse fixed deltas (real modules)."""
    from deltamtl.model.delta import delta_modules

    cfg = {"model": dict(mcfg or SMALL_MODEL)}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    base = MultiTaskViT(cfg, [BASE_TASK]).eval()
    for p in base.parameters():  # weights larger than the init's std 0.02: livelier activations
        p.add_(0.1 * torch.randn(p.shape, generator=gen))
    subs = {}
    for task in subtasks:
        sub = build_subtask_model(base, task, cfg, GateConfig()).eval()
        for _, m in delta_modules(sub):
            for gd in (m.weight_delta, m.bias_delta):
                if gd is None:
                    continue
                gd.delta.copy_(0.05 * torch.randn(gd.delta.shape, generator=gen))
                keep = torch.rand(gd.delta.shape, generator=gen) < density
                gd.element_gate.log_alpha.copy_(torch.where(keep, 5.0, -5.0))
            m.fix_mask()
        for ln in (mod for mod in sub.modules() if isinstance(mod, nn.LayerNorm)):
            ln.weight.add_(0.1 * torch.randn(ln.weight.shape, generator=gen))
        subs[task] = sub
    return MultiTask(base, subs).eval()


# ---------------------------------------------------------------------------------------
# Accuracy: quantised vs float on every task metric
# ---------------------------------------------------------------------------------------
def compare_accuracy(q: Quantizer, dataset: Any, batch_size: int = 16,
                     quant_mode: str = "int") -> dict[str, dict[str, Any]]:
    """Float and quantised metrics of every task and the relative change of each.

    ``rel_change`` is (quant - float) / |float|, signed so that positive is worse for
    lower-is-better metrics too (``worse_rel``); acceptance is worse_rel <= 2 % on each
    task's primary metric.
    """
    from deltamtl.model.evaluate import evaluate_model
    from deltamtl.model.metrics import PRIMARY_METRIC

    tasks = q.mt.tasks
    q.set_mode("float")
    f = evaluate_model(q.mt, dataset, tasks, batch_size=batch_size)
    q.set_mode(quant_mode)
    try:
        z = evaluate_model(q.mt, dataset, tasks, batch_size=batch_size)
    finally:
        q.set_mode("float")
    out: dict[str, dict[str, Any]] = {}
    for t in tasks:
        entry = PRIMARY_METRIC[t]
        key, higher = entry if isinstance(entry, tuple) else (entry, True)
        fv, zv = f[t][key], z[t][key]
        worse = (fv - zv) / abs(fv) if higher else (zv - fv) / abs(fv)
        out[t] = {"metric": key, "float": fv, "quant": zv, "worse_rel": worse,
                  "pass": bool(worse <= 0.02), "float_all": f[t], "quant_all": z[t]}
    return out


# ---------------------------------------------------------------------------------------
# QAT fine-tuning recipe for the one training entry point (deltamtl.model.train)
# ---------------------------------------------------------------------------------------
QAT_DEFAULTS = {"lr_qat": 1.0e-5, "calib_batches": 8, "calib_percentile": 99.99,
                "sub_checkpoint": "{out_root}/{task}/step3/last.pt", "sub_checkpoints": {}}


def qat_value(cfg: dict, key: str) -> Any:
    q = (cfg.get("sharing") or {}).get("quant") or {}
    return q.get(key, QAT_DEFAULTS[key])


def trained_multitask(cfg: dict, require_subtasks: bool = True, log: Any = None,
                      sub_paths: Mapping[str, str] | None = None) -> MultiTask:
    """The trained delta-shared model named by the config (base + step-3 sub-tasks).

    ``sub_paths`` overrides the checkpoint of individual sub-tasks. With
    ``require_subtasks=False`` sub-tasks whose checkpoint is missing are left out (and
    named through ``log``); the base checkpoint is always required.
    """
    from deltamtl.model.sharing_train import sharing_value

    root = str(sharing_value(cfg, "out_root"))
    names = (cfg.get("sharing") or {}).get("subtasks") or []
    subs = {t: str(qat_value(cfg, "sub_checkpoint")).format(out_root=root, task=t) for t in names}
    unknown = sorted(set(sub_paths or {}) - set(names))
    if unknown:
        raise ValueError(f"sub-task checkpoint given for {unknown}, not in sharing.subtasks {names}")
    subs.update(sub_paths or {})
    base_ckpt = str(sharing_value(cfg, "base_checkpoint"))
    missing = [p for p in [base_ckpt, *subs.values()] if not Path(p).is_file()]
    if missing and (require_subtasks or base_ckpt in missing):
        raise FileNotFoundError(f"trained model: missing checkpoint(s) {missing} (run the training first)")
    if missing and log is not None:
        log(f"trained model: sub-task checkpoint(s) {missing} missing; quantising without them")
    subs = {t: p for t, p in subs.items() if p not in missing}
    return load_multitask(cfg, base_ckpt, subs)


def calibration_batches(cfg: dict, n_batches: int, batch_size: int = 8, split: str = "train"
                        ) -> list[torch.Tensor]:
    """Frames of the synthetic video for calibration: the first clips of ``split``, in order.

    Only the clips needed are rendered (the images are those SyntheticVideoDataset gives).
    """
    from deltamtl.model.data.datasets import synthetic_clips

    d, size = cfg["data"], int(cfg["model"]["img_size"])
    fpc = int(d["frames_per_clip"])
    n_clips = -(-n_batches * batch_size // fpc)
    clips = synthetic_clips(split, n_clips, fpc, size, size, seed=int(d["seed"]))
    rgb = np.concatenate([c.rgb for c in clips])[: n_batches * batch_size]
    imgs = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2), np.float32) / 255.0)
    return list(imgs.split(batch_size))


def _recipe_base() -> type:
    from deltamtl.model.recipe import Recipe

    return Recipe


def recipe_qat(args: Any) -> Any:
    """QAT fine-tune of the whole multi-task model with fake-quant sites (STE gradients).

    ``build_model`` loads the trained model (base + step-3 sub-tasks, masks fixed) and
    installs the quantiser; ``initialize`` calibrates on the synthetic training video;
    the scales travel in the checkpoint's recipe state. Loss: sum over tasks of
    ``train.loss_weights[task] * task loss`` through the fake-quant forward. Trainable:
    everything except the Hard-Concrete gates (masked deltas stay exactly zero).
    Config: ``sharing.quant.{lr_qat, calib_batches, calib_percentile, sub_checkpoint}``.
    """
    Recipe = _recipe_base()

    class QatRecipe(Recipe):  # type: ignore[misc, valid-type]
        name = "qat"

        def __init__(self, a: Any) -> None:
            super().__init__(a, (BASE_TASK, *((a.cfg.get("sharing") or {}).get("subtasks") or ())))
            self.quantizer: Quantizer | None = None

        def build_model(self) -> nn.Module:
            mt = trained_multitask(self.cfg, sub_paths=qat_value(self.cfg, "sub_checkpoints"))
            self.quantizer = Quantizer(mt, percentile=float(qat_value(self.cfg, "calib_percentile")))
            self.quantizer.set_mode("qat")
            return mt

        def initialize(self, model: nn.Module) -> None:
            assert self.quantizer is not None
            self.quantizer.calibrate(calibration_batches(self.cfg, int(qat_value(self.cfg, "calib_batches"))))
            self.quantizer.set_mode("qat")

        def param_groups(self, model: nn.Module) -> list[dict]:
            params: dict[int, nn.Parameter] = {}
            for n, p in model.named_parameters():  # the base is frozen by load; unfreeze it
                p.requires_grad_(not n.endswith("log_alpha"))
                if p.requires_grad:
                    params[id(p)] = p
            return [{"params": list(params.values()), "lr": float(qat_value(self.cfg, "lr_qat")),
                     "weight_decay": 0.0}]

        def training_loss(self, model: nn.Module, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
            from deltamtl.model.data.synthetic import IGNORE_INDEX
            from deltamtl.model.losses import task_loss

            outputs = model(batch["image"])
            total = torch.zeros((), device=batch["image"].device)
            logs: dict[str, float] = {}
            weights = self.cfg["train"]["loss_weights"]
            for t, out in outputs.items():
                lt = task_loss(t, out, batch, self.cfg["train"], int(IGNORE_INDEX))
                logs[f"loss_{t}"] = float(lt.detach())
                total = total + float(weights.get(t, 1.0)) * lt
            return total, logs

        def state_dict(self) -> dict:
            assert self.quantizer is not None
            return {"scales": {f"{g.layer}:{g.site}": {"s_x": g.s_x, "s_y": dict(g.s_y)}
                               for g in self.quantizer.groups.values()}}

        def load_state_dict(self, state: dict) -> None:
            assert self.quantizer is not None
            for key, v in state.get("scales", {}).items():
                layer, site = key.split(":", 1)
                g = self.quantizer.groups[(int(layer), site)]
                g.s_x, g.s_y = v["s_x"], dict(v["s_y"])
            self.quantizer.set_mode("qat")

    return QatRecipe(args)


# ---------------------------------------------------------------------------------------
# Bit-exactness of a whole clip: golden runner vs the integer-mode torch model
# ---------------------------------------------------------------------------------------
@torch.no_grad()
def bitexact_clip(q: Quantizer, qm: QuantizedModel, frames: np.ndarray, executor: Any = None
                  ) -> dict[str, Any]:
    """Run ``frames`` (uint8 [T, H, W, 3]) through the torch model in ``int`` mode and the
    golden runner fed the torch model's int8 site inputs; compare every site output.

    Returns counts and the first mismatches as (frame, task, site). Thresholds of ``qm``
    should be 1 (lossless) for the dense torch model to be the reference in every mode.
    """
    from deltamtl.model.golden import GoldenRunner

    q.bind(qm)
    q.set_mode("int")
    runner = GoldenRunner(qm, executor, trace=True)
    compared, mismatches = 0, []
    try:
        for i, frame in enumerate(frames):
            img = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1), np.float32) / 255.0)
            with q.recording() as log:
                q.mt(img[None])
            tr = {(t, n): (x[0], y[0]) for t, n, x, y in log}
            runner.run_frame(frame, override=lambda t, n, tr=tr: tr[(t, n)][0])
            if runner.trace[i].keys() != tr.keys():
                raise RuntimeError(f"frame {i}: golden and torch ran different sites")
            for key, (_x, y) in tr.items():
                compared += 1
                if not np.array_equal(runner.trace[i][key][1], y):
                    mismatches.append((i, *key))
    finally:
        q.set_mode("float")
    modes = sorted({r.mode.name for r in runner.records})
    return {"frames": len(frames), "site_outputs_compared": compared, "mismatches": len(mismatches),
            "first_mismatches": mismatches[:10], "modes": modes, "jobs": len(runner.records)}
