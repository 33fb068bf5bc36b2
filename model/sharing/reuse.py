"""Threshold inference in float PyTorch: task- and temporal-domain activation reuse.

Implements the site algebra of docs/architecture.md (the integer contract's modes, in float) on the
real models by swapping every linear site for a :class:`ReuseSite`:

* DENSE:    Y = X W^T + b; if the site keeps state: x_ref := X, Y_ref := Y.
* TEMPORAL: d = keep(X - x_ref); x_ref += d; Y_ref += d W^T; output Y_ref.
            (W = W_b + dW for a sub-task.) x_ref is the last value *sent*, so the error
            stays bounded by th per element however long the video runs.
* TASK:     d = keep(X_k - x_ref_b); Y_k = Y_ref_b + d W_b^T + (x_ref_b + d) dW_k^T + db_k,
            with the base's references at the same site and frame. On a keyframe a
            sub-task site above its boundary also stores x_ref_k := x_ref_b + d, Y_ref_k := Y_k.

``keep(d, th)`` zeroes entries with |d| < th, so th = 0 keeps everything and the reuse
model computes exactly the dense model (to floating-point summation order; bit-exact on
integer-valued data, where float64 arithmetic is exact).

Sparse products are executed as sparse products (gather the non-zeros, multiply, scatter
add), and every MAC counter is incremented by the number of multiplications that were
actually formed, so the ledger is what the code executed. That equals the contract's rule
(:func:`deltamtl.model.sharing.accounting.site_macs`); a DENSE site runs one dense product
and is charged by the rule, nnz(x) * O (in float, x holds no exact zeros in practice).

Which mode a site runs is the :class:`Policy`: keyframe interval K, whether sub-tasks use
task reuse, whether non-keyframes use temporal reuse, and per-sub-task boundaries l_k
(TASK for blocks <= l_k, TEMPORAL above on non-keyframes). Thresholds are per
(task, block); the base's patch embedding uses the base's block-0 threshold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from deltamtl.contract.formats import Mode
from deltamtl.model.sharing.accounting import site_macs
from deltamtl.model.sharing.delta import DeltaLinear
from deltamtl.model.sharing.subtasks import _get, _set, block_sites
from deltamtl.model.tasks import BASE_TASK, EMBED
from deltamtl.model.training.vit import MultiTaskViT
from torch import nn

EMBED_BLOCK = -1  # block index used for the base's patch-embedding site
EMBED_SITE = EMBED  # the patch embedding's site name (model/tasks.py)
EXTRAS_BLOCK = -2  # ledger block index for the dense attention core + head of a task
EXTRAS_SITE = "attention+head"


def keep(d: torch.Tensor, th: float) -> torch.Tensor:
    """Delta encoding: zero the entries with |d| < th (th = 0 keeps every entry)."""
    if th < 0:
        raise ValueError(f"threshold must be >= 0, got {th!r}")
    if th == 0:
        return d
    return torch.where(d.abs() >= th, d, torch.zeros_like(d))


def act_sparse_matmul(d: torch.Tensor, weight: torch.Tensor, sparse: bool = True
                      ) -> tuple[torch.Tensor, int]:
    """d W^T over the non-zeros of d ([..., I] x [O, I]); returns (result, MACs).

    ``sparse=True`` executes only the non-zero products (gather, multiply, scatter-add) and
    returns the number of multiplications formed. ``sparse=False`` is the fast path for long
    evaluations: one dense matmul (zeros contribute exactly zero) and the same count,
    nnz(d) * O; tests check both paths agree in value and count.
    """
    lead, in_dim = d.shape[:-1], d.shape[-1]
    flat = d.reshape(-1, in_dim)
    if not sparse:
        return (flat @ weight.t()).reshape(*lead, weight.shape[0]), int(
            torch.count_nonzero(flat)) * weight.shape[0]
    rows, cols = flat.nonzero(as_tuple=True)
    prod = flat[rows, cols].unsqueeze(1) * weight.t()[cols]  # [nnz, O]: one MAC per element
    out = flat.new_zeros(flat.shape[0], weight.shape[0]).index_add_(0, rows, prod)
    return out.reshape(*lead, weight.shape[0]), prod.numel()


def weight_sparse_matmul(x: torch.Tensor, dweight: torch.Tensor, sparse: bool = True
                         ) -> tuple[torch.Tensor, int]:
    """x dW^T over the non-zeros of dW ([..., I] x [O, I]); returns (result, MACs)."""
    if not sparse:
        rows = x.numel() // x.shape[-1]
        return x @ dweight.t(), rows * int(torch.count_nonzero(dweight))
    orow, icol = dweight.nonzero(as_tuple=True)
    prod = x[..., icol] * dweight[orow, icol]  # [..., nnz(dW)]
    out = x.new_zeros(*x.shape[:-1], dweight.shape[0]).index_add_(-1, orow, prod)
    return out, prod.numel()


@dataclass
class Policy:
    """How each site runs on each frame; see the module docstring."""

    depth: int
    keyframe_interval: int = 5
    task_reuse: bool = True
    temporal: bool = True
    boundaries: dict[str, int] = field(default_factory=dict)
    thresholds: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be >= 1, got {self.keyframe_interval!r}")
        for task, b in self.boundaries.items():
            if not -1 <= b < self.depth:
                raise ValueError(f"boundary of {task} must be in [-1, {self.depth - 1}], got {b!r}")
        for task, ths in self.thresholds.items():
            if len(ths) != self.depth or any(t < 0 for t in ths):
                raise ValueError(
                    f"thresholds of {task} must be {self.depth} values >= 0, got {ths!r}"
                )

    def threshold(self, task: str, block: int) -> float:
        ths = self.thresholds.get(task)
        return 0.0 if ths is None else float(ths[max(block, 0)])

    def boundary(self, task: str) -> int:
        return self.boundaries.get(task, self.depth - 1)

    def is_keyframe(self, index: int) -> bool:
        return not self.temporal or index % self.keyframe_interval == 0

    def base_mode(self, keyframe: bool) -> Mode:
        return Mode.DENSE if keyframe else Mode.TEMPORAL

    def sub_mode(self, task: str, block: int, keyframe: bool) -> tuple[Mode, bool]:
        """(mode, store references) of a sub-task site."""
        above = block > self.boundary(task)
        if not self.task_reuse:
            return (Mode.DENSE, self.temporal) if keyframe else (Mode.TEMPORAL, True)
        if keyframe:
            return Mode.TASK, self.temporal and above
        return (Mode.TEMPORAL, True) if above else (Mode.TASK, False)


@dataclass
class Ledger:
    """Executed MACs and delta statistics, keyed by (task, block, site, mode)."""

    macs: dict[tuple[str, int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    nnz: dict[tuple[str, int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    numel: dict[tuple[str, int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    calls: dict[tuple[str, int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    frames: int = 0

    def add(self, key: tuple[str, int, str, str], macs: int, nnz: int = 0, numel: int = 0) -> None:
        self.calls[key] += 1
        self.macs[key] += int(macs)
        self.nnz[key] += int(nnz)
        self.numel[key] += int(numel)

    def total(self, task: str | None = None) -> int:
        return sum(v for k, v in self.macs.items() if task is None or k[0] == task)

    def by_task(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for k, v in self.macs.items():
            out[k[0]] += v
        return dict(out)

    def density(self, task: str, block: int, mode: str) -> float:
        """Kept fraction of the delta activations of (task, block) in ``mode`` (nan if none)."""
        nnz = sum(v for k, v in self.nnz.items() if k[:2] == (task, block) and k[3] == mode)
        num = sum(v for k, v in self.numel.items() if k[:2] == (task, block) and k[3] == mode)
        return nnz / num if num else float("nan")


class ReuseSite(nn.Module):
    """A linear site under threshold inference; keeps its references between frames."""

    def __init__(self, inner: nn.Linear | DeltaLinear, task: str, block: int, site: str,
                 engine: ReuseEngine, base_site: ReuseSite | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.task, self.block, self.site = task, block, site
        object.__setattr__(self, "_engine", engine)  # not a submodule
        object.__setattr__(self, "_base_site", base_site)
        self.x_ref: torch.Tensor | None = None
        self.y_ref: torch.Tensor | None = None
        self.frame_id = -1
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self) -> None:
        self.x_ref = self.y_ref = None
        self.frame_id = -1
        self._cache = None

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None,
                                torch.Tensor | None]:
        """(W_b, b_b, dW, db) with dW/db None for a plain linear."""
        if isinstance(self.inner, DeltaLinear):
            base = self.inner.base
            return (base.weight, base.bias, self.inner.effective_delta_weight(),
                    self.inner.effective_delta_bias())
        return self.inner.weight, self.inner.bias, None, None

    def _record(self, mode: Mode, macs: int, d: torch.Tensor | None = None) -> None:
        nnz = int(torch.count_nonzero(d)) if d is not None else 0
        numel = d.numel() if d is not None else 0
        self._engine.ledger.add((self.task, self.block, self.site, mode.name), macs, nnz, numel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eng = self._engine
        if self.frame_id == eng.frame_id and self._cache is not None:
            # A shared site (the patch embedding) called again by a sub-task in the same frame.
            if not torch.equal(self._cache[0], x):
                raise RuntimeError(f"shared site {self.site} got a different input within a frame")
            return self._cache[1]
        w_b, b_b, dw, db = self._weights()
        th = eng.policy.threshold(self.task, self.block)
        if self.task == BASE_TASK:
            mode, store = eng.policy.base_mode(eng.keyframe), True
        else:
            mode, store = eng.policy.sub_mode(self.task, self.block, eng.keyframe)
        if mode == Mode.DENSE:
            w = w_b if dw is None else w_b + dw
            b = b_b if db is None else b_b + db
            y = F.linear(x, w, b)
            # the contract's rule: nnz(x) * O (a dW merged into W costs no multiplications)
            self._record(mode, site_macs(mode, x.numel() // x.shape[-1], x.shape[-1], w.shape[0],
                                         int(torch.count_nonzero(x))))
            if store:
                self.x_ref, self.y_ref = x, y
        elif mode == Mode.TEMPORAL:
            if self.x_ref is None or self.x_ref.shape != x.shape:
                raise RuntimeError(
                    f"{self.task} block {self.block} {self.site}: TEMPORAL without a keyframe "
                    "reference (reset the engine at the start of each clip)"
                )
            w = w_b if dw is None else w_b + dw
            d = keep(x - self.x_ref, th)
            dy, macs = act_sparse_matmul(d, w, eng.sparse_exec)
            self.x_ref = self.x_ref + d
            self.y_ref = self.y_ref + dy
            y = self.y_ref
            self._record(mode, macs, d)
        else:  # TASK
            base_site = self._base_site
            if base_site is None or base_site.frame_id != eng.frame_id:
                raise RuntimeError(
                    f"{self.task} block {self.block} {self.site}: TASK before the base ran this frame"
                )
            d = keep(x - base_site.x_ref, th)
            y1, m1 = act_sparse_matmul(d, w_b, eng.sparse_exec)
            x_k = base_site.x_ref + d
            y = base_site.y_ref + y1
            m2 = 0
            if dw is not None:
                y2, m2 = weight_sparse_matmul(x_k, dw, eng.sparse_exec)
                y = y + y2
            if db is not None:
                y = y + db
            self._record(mode, m1 + m2, d)
            if store:
                self.x_ref, self.y_ref = x_k, y
        self.frame_id = eng.frame_id
        if self.site == EMBED_SITE:
            self._cache = (x, y)
        return y


class ReuseEngine:
    """Runs a base model and sub-task models frame by frame under a :class:`Policy`.

    Use as ``with ReuseEngine(base, subs, policy) as eng: out = eng.run_frame(img, key)``;
    the sites are swapped in on entry and the original modules restored on exit.
    """

    def __init__(self, base: MultiTaskViT, subs: Mapping[str, MultiTaskViT], policy: Policy,
                 count_dense_extras: bool = True, sparse_exec: bool = True) -> None:
        from deltamtl.model.sharing.accounting import attention_core_macs, head_macs

        if len(base.encoder.blocks) != policy.depth:
            raise ValueError(f"policy depth {policy.depth} != model depth {len(base.encoder.blocks)}")
        self.base, self.subs, self.policy = base, dict(subs), policy
        self.sparse_exec = sparse_exec  # False: dense matmuls on the kept deltas (fast path)
        self.ledger = Ledger()
        self.frame_id = -1
        self.keyframe = True
        self._swapped: list[tuple[nn.Module, str, nn.Module]] = []
        self._sites: list[ReuseSite] = []
        self._extras: dict[str, int] = {}
        if count_dense_extras:
            self._extras[BASE_TASK] = attention_core_macs(base) + head_macs(base, BASE_TASK)
            for t, m in self.subs.items():
                self._extras[t] = attention_core_macs(m) + head_macs(m, t)

    # -- installation -----------------------------------------------------------------
    def _swap(self, owner: nn.Module, dotted: str, new: nn.Module) -> None:
        self._swapped.append((owner, dotted, _get(owner, dotted)))
        _set(owner, dotted, new)

    def install(self) -> None:
        if self._swapped:
            raise RuntimeError("ReuseEngine already installed")
        embed = ReuseSite(self.base.encoder.patch_embed, BASE_TASK, EMBED_BLOCK, EMBED_SITE, self)
        self._sites.append(embed)
        self._swap(self.base, "encoder.patch_embed", embed)
        base_sites: dict[tuple[int, str], ReuseSite] = {}
        for b, site, module in list(block_sites(self.base)):
            rs = ReuseSite(module, BASE_TASK, b, site, self)
            base_sites[(b, site)] = rs
            self._sites.append(rs)
            self._swap(self.base.encoder.blocks[b], site, rs)
        for task, model in self.subs.items():
            if model.encoder.patch_embed is not embed.inner:
                raise ValueError(f"sub-task {task} does not share the base's patch embedding")
            self._swap(model, "encoder.patch_embed", embed)
            for b, site, module in list(block_sites(model)):
                rs = ReuseSite(module, task, b, site, self, base_sites[(b, site)])
                self._sites.append(rs)
                self._swap(model.encoder.blocks[b], site, rs)

    def remove(self) -> None:
        for owner, dotted, original in reversed(self._swapped):
            _set(owner, dotted, original)
        self._swapped.clear()
        self._sites.clear()

    def __enter__(self) -> ReuseEngine:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- running ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every reference (call at the start of each clip)."""
        for s in self._sites:
            s.reset()

    @torch.no_grad()
    def run_frame(self, images: torch.Tensor, keyframe: bool) -> dict[str, torch.Tensor]:
        """One frame for every task: base first, then each sub-task."""
        if not self._swapped:
            raise RuntimeError("ReuseEngine.run_frame outside install()/with-block")
        self.frame_id += 1
        self.keyframe = keyframe
        out = {BASE_TASK: self.base(images, task=BASE_TASK)[BASE_TASK]}
        for task, model in self.subs.items():
            out[task] = model(images)[task]
        for task, extra in self._extras.items():
            self.ledger.add((task, EXTRAS_BLOCK, EXTRAS_SITE, Mode.DENSE.name),
                            extra * images.shape[0])
        self.ledger.frames += 1
        return out

    def run_clip(self, frames: Sequence[torch.Tensor] | torch.Tensor,
                 key_offset: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Yield outputs for each frame; frame i is a keyframe when (i - key_offset) % K == 0.

        Frames before the first keyframe (i < key_offset) are skipped: the video starts there.
        """
        self.reset()
        for i, img in enumerate(frames):
            if i < key_offset:
                continue
            yield self.run_frame(img, self.policy.is_keyframe(i - key_offset))


@contextmanager
def reuse(base: MultiTaskViT, subs: Mapping[str, MultiTaskViT], policy: Policy
          ) -> Iterator[ReuseEngine]:
    engine = ReuseEngine(base, subs, policy)
    with engine:
        yield engine


# -- video evaluation ------------------------------------------------------------------------
def clip_frames(clips: Sequence) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Data-set clips -> (frames [T, B, 3, H, W] float in [0,1], per-frame target batches)."""
    from deltamtl.model.data.io_utils import to_sample

    lengths = {c.rgb.shape[0] for c in clips}
    if len(lengths) != 1:
        raise ValueError(f"clips must have equal lengths to run in lockstep, got {sorted(lengths)}")
    n_frames = lengths.pop()
    frames, targets = [], []
    for t in range(n_frames):
        samples = [to_sample(c.rgb[t], c.semseg[t], c.depth[t], c.normals[t], c.edges[t])
                   for c in clips]
        batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
        frames.append(batch.pop("image"))
        targets.append(batch)
    return torch.stack(frames), targets


@torch.no_grad()
def evaluate_video(base: MultiTaskViT, subs: Mapping[str, MultiTaskViT], policy: Policy,
                   clips: Sequence, key_offsets: Sequence[int] | None = None,
                   num_classes: int | None = None, sparse_exec: bool = True) -> dict:
    """Metrics and executed MACs of threshold inference on video clips.

    For each keyframe offset o in ``key_offsets`` (default 0..K-1) the clips start their
    keyframe schedule at frame o; every processed frame is scored at its distance from the
    last keyframe, and the metrics of each distance are averaged (the paper's protocol of
    evaluating labelled frames at offsets 0..4 from the keyframe). MACs are per frame and
    image, averaged over every processed frame. Clips run in lockstep as one batch.
    """
    from deltamtl.model.training.evaluate import _meter, predictions_to_numpy, targets_to_numpy

    frames, targets = clip_frames(clips)
    frames = frames.to(base.pixel_mean.device, base.pixel_mean.dtype)
    k = policy.keyframe_interval if policy.temporal else 1
    offsets = list(range(k)) if key_offsets is None else list(key_offsets)
    if not offsets or frames.shape[0] - min(offsets) < k:
        raise ValueError(f"clips of {frames.shape[0]} frames do not cover keyframe interval {k} "
                         f"from offsets {offsets}")
    n_cls = num_classes if num_classes is not None else base.num_classes
    tasks = [BASE_TASK, *subs]
    meters = {d: {t: _meter(t, n_cls) for t in tasks} for d in range(k)}
    engine = ReuseEngine(base, subs, policy, sparse_exec=sparse_exec)
    images = 0
    with engine:
        for o in offsets:
            for i, out in enumerate(engine.run_clip(frames, key_offset=o), start=o):
                dist = (i - o) % k
                for t in tasks:
                    meters[dist][t].update(predictions_to_numpy(t, out[t]),
                                           targets_to_numpy(t, targets[i][t]))
                images += frames.shape[1]
    per_offset = {d: {t: {m: float(v) for m, v in meters[d][t].compute().items()} for t in tasks}
                  for d in range(k)}
    metrics = {t: {m: sum(per_offset[d][t][m] for d in per_offset) / len(per_offset)
                   for m in per_offset[next(iter(per_offset))][t]} for t in tasks}
    ledger = engine.ledger
    macs = {t: ledger.total(t) / images for t in tasks}
    return {"metrics": metrics, "per_offset": per_offset, "macs_per_image": macs,
            "total_macs_per_image": sum(macs.values()), "images": images, "ledger": ledger}
