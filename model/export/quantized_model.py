"""The quantised multi-task model as the bundle holds it and the runner executes it:
per site the int8 base weights, CSR deltas per sub-task, int32 biases, scales and
requantisers (:class:`SiteParams`); the reuse policy (:class:`ReusePolicy`: integer
thresholds, boundaries, keyframe interval); the host's float parameters
(:class:`QuantizedModel`). Written and read by :mod:`deltamtl.model.export.bundle`
(docs/export-format.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from deltamtl.contract.formats import TH_MAX, TH_MIN
from deltamtl.contract.jobs import CsrDelta
from deltamtl.contract.limits import CoreLimits
from deltamtl.model.tasks import BASE_TASK, site_name


# ---------------------------------------------------------------------------------------
# The quantised model
# ---------------------------------------------------------------------------------------
@dataclass
class SiteParams:
    """One linear site, all tasks. Scales are float64 in the model, float32 on export."""

    layer: int
    site: str
    s_x: float  # activation scale of the site input, shared by every task
    s_w: np.ndarray  # float64 [O]: per-output-channel weight scale, shared by every task
    w: np.ndarray  # int8 [O, I]: base weights
    bias: np.ndarray  # int32 [O]: base bias in the accumulator scale s_x * s_w
    dw: dict[str, CsrDelta] = field(default_factory=dict)  # per sub-task
    db: dict[str, np.ndarray] = field(default_factory=dict)  # int32 [O] per sub-task
    s_y: dict[str, float] = field(default_factory=dict)  # per task: output scale
    req_mult: dict[str, np.ndarray] = field(default_factory=dict)  # uint16 [O] per task
    req_shift: dict[str, np.ndarray] = field(default_factory=dict)  # uint8 [O] per task

    @property
    def name(self) -> str:
        return site_name(self.layer, self.site)

    @property
    def out_dim(self) -> int:
        return int(self.w.shape[0])

    @property
    def in_dim(self) -> int:
        return int(self.w.shape[1])

    def task_weight(self, task: str) -> np.ndarray:
        """W_b + dW_k as int32 (the contract keeps it within int8)."""
        w = self.w.astype(np.int32)
        if task in self.dw:
            w = w + self.dw[task].to_dense(self.out_dim, self.in_dim)
        return w

    def task_bias(self, task: str) -> np.ndarray:
        b = self.bias.astype(np.int64)
        if task in self.db:
            b = b + self.db[task]
        return b.astype(np.int32)


@dataclass
class ReusePolicy:
    """Integer thresholds per (task, block), boundaries l_k, keyframe interval and offset."""

    depth: int
    keyframe_interval: int = 5
    key_offset: int = 0
    task_reuse: bool = True
    thresholds: dict[str, list[int]] = field(default_factory=dict)  # missing task: th = 1
    boundaries: dict[str, int] = field(default_factory=dict)  # missing sub-task: depth - 1

    def __post_init__(self) -> None:
        if self.keyframe_interval < 1:
            raise ValueError(f"keyframe_interval must be >= 1, got {self.keyframe_interval!r}")
        if not 0 <= self.key_offset < self.keyframe_interval:
            raise ValueError(f"key_offset must be in [0, K={self.keyframe_interval}), got {self.key_offset!r}")
        for task, ths in self.thresholds.items():
            if len(ths) != self.depth or any(not TH_MIN <= int(t) <= TH_MAX for t in ths):
                raise ValueError(f"thresholds of {task} must be {self.depth} ints in "
                                 f"[{TH_MIN}, {TH_MAX}], got {ths!r}")
        for task, b in self.boundaries.items():
            if not -1 <= int(b) < self.depth:
                raise ValueError(f"boundary of {task} must be in [-1, {self.depth - 1}], got {b!r}")

    @property
    def temporal(self) -> bool:
        return self.keyframe_interval > 1

    def threshold(self, task: str, layer: int) -> int:
        ths = self.thresholds.get(task)
        return 1 if ths is None else int(ths[max(layer, 0)])

    def boundary(self, task: str) -> int:
        return int(self.boundaries.get(task, self.depth - 1))

    def is_keyframe(self, index: int) -> bool:
        return index == 0 or (index - self.key_offset) % self.keyframe_interval == 0


@dataclass
class QuantizedModel:
    """Everything the runner (and the export bundle) needs; tasks[0] is the base task."""

    mcfg: dict  # the config's ``model`` section
    tasks: tuple[str, ...]
    sites: list[SiteParams]
    host: dict[str, dict[str, np.ndarray]]  # per task: float32 host params (state-dict names)
    policy: ReusePolicy

    def __post_init__(self) -> None:
        if not self.tasks or self.tasks[0] != BASE_TASK:
            raise ValueError(f"tasks must start with the base task {BASE_TASK!r}, got {self.tasks}")

    @property
    def base(self) -> str:
        return self.tasks[0]

    @property
    def subtasks(self) -> tuple[str, ...]:
        return self.tasks[1:]

    @property
    def depth(self) -> int:
        return int(self.mcfg["depth"])

    @property
    def tokens(self) -> int:
        return (int(self.mcfg["img_size"]) // int(self.mcfg["patch_size"])) ** 2

    def site(self, layer: int, site: str) -> SiteParams:
        return self._index()[(layer, site)]

    def _index(self) -> dict[tuple[int, str], SiteParams]:
        return {(s.layer, s.site): s for s in self.sites}

    def core_limits(self, lanes: int = 32, token_rows: int = 1) -> CoreLimits:
        """The smallest compiled maxima that run every job of this model."""
        nnz = max([d.nnz for s in self.sites for d in s.dw.values()] + [1])
        return CoreLimits(
            max_tokens=self.tokens,
            max_in=max(s.in_dim for s in self.sites),
            max_out=max(s.out_dim for s in self.sites),
            max_nnz_dw=int(nnz),
            lanes=lanes,
            max_weights=max(s.in_dim * s.out_dim for s in self.sites),
            token_rows=token_rows,
        )
