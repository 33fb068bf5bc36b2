"""One site job and its result as numpy data: :class:`SiteJob` (mode, flags, threshold,
input, weights, CSR delta, bias, requantiser, references), :class:`CsrDelta`,
:class:`CoreState` (what the core keeps between jobs) and :class:`JobResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from deltamtl.contract.formats import (
    JobFlag,
    Mode,
)
from deltamtl.contract.packets import (
    CoreStatus,
)


@dataclass
class CsrDelta:
    """Delta weights dW as CSR over output rows (contract dtypes)."""

    indptr: np.ndarray  # int32 [O + 1]
    indices: np.ndarray  # uint16 [nnz]
    values: np.ndarray  # int8 [nnz]

    @property
    def nnz(self) -> int:
        return int(self.values.size)

    @classmethod
    def from_dense(cls, dense: np.ndarray) -> CsrDelta:
        dense = np.asarray(dense)
        rows, cols = np.nonzero(dense)
        indptr = np.zeros(dense.shape[0] + 1, dtype=np.int32)
        np.add.at(indptr, rows + 1, 1)
        return cls(
            indptr=np.cumsum(indptr, dtype=np.int64).astype(np.int32),
            indices=cols.astype(np.uint16),
            values=dense[rows, cols].astype(np.int8),
        )

    @classmethod
    def empty(cls, out_dim: int) -> CsrDelta:
        return cls(np.zeros(out_dim + 1, np.int32), np.zeros(0, np.uint16), np.zeros(0, np.int8))

    def to_dense(self, out_dim: int, in_dim: int) -> np.ndarray:
        dense = np.zeros((out_dim, in_dim), dtype=np.int32)
        rows = np.repeat(np.arange(out_dim), np.diff(self.indptr.astype(np.int64)))
        np.add.at(dense, (rows, self.indices.astype(np.int64)), self.values.astype(np.int32))
        return dense

    def rows(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr.astype(np.int64)))


@dataclass
class SiteJob:
    """One core job. Arrays use contract dtypes; optional sections are None when absent."""

    mode: Mode
    flags: JobFlag
    th: int
    x: np.ndarray  # int8 [P, I]
    req_mult: np.ndarray  # uint16 [O]
    req_shift: np.ndarray  # uint8 [O]
    out_dim: int
    w: np.ndarray | None = None  # int8 [O, I], present iff LOAD_W
    dw: CsrDelta | None = None  # delta weights (TASK: X_k dW^T; DENSE/TEMPORAL: W_b + dW)
    bias: np.ndarray | None = None  # int32 [O]: full bias in DENSE, bias delta in TASK
    x_ref: np.ndarray | None = None  # int8 [P, I], present iff LOAD_REF (TEMPORAL/TASK)
    y_ref: np.ndarray | None = None  # int32 [P, O]
    tag: int = 0

    @property
    def tokens(self) -> int:
        return int(self.x.shape[0])

    @property
    def in_dim(self) -> int:
        return int(self.x.shape[1])

    @property
    def nnz_dw(self) -> int:
        return 0 if self.dw is None else self.dw.nnz


@dataclass
class CoreState:
    """What persists in the core between jobs: the weight bank and the reuse buffer."""

    w: np.ndarray | None = None  # int8 [O, I]
    x_ref: np.ndarray | None = None  # int8 [P, I]
    y_ref: np.ndarray | None = None  # int32 [P, O]


@dataclass
class JobResult:
    status: CoreStatus
    tag: int
    nnz_act: int = 0
    y: np.ndarray | None = None  # int8 [P, O]
    x_ref: np.ndarray | None = None  # int8 [P, I], present iff EMIT_REF
    y_ref: np.ndarray | None = None  # int32 [P, O]
    extra: dict = field(default_factory=dict)


def with_flags(job: SiteJob, flags: JobFlag) -> SiteJob:
    return replace(job, flags=JobFlag(flags))
