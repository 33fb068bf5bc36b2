"""Number formats of the integer contract, the one rounding rule, delta encoding, the three
site modes and the job flags (docs/architecture.md, "The integer contract").

Every level computes with these: int8 activations and weights, int9 deltas, int32
wrap-around accumulators, the requantiser ``clamp((acc * mult + 2^(shift-1)) >> shift)``
and ``keep_delta`` (keep ``d`` where ``|d| >= th``).
"""

from __future__ import annotations

import enum

import numpy as np

CONTRACT_VERSION = 1


# ---------------------------------------------------------------------------------------
# Number formats
# ---------------------------------------------------------------------------------------
ACT_BITS = 8  # site input/output activations, int8


ACT_MIN = -(1 << (ACT_BITS - 1))


ACT_MAX = (1 << (ACT_BITS - 1)) - 1


WEIGHT_BITS = 8  # base weights and delta weights, int8, per-output-channel base scale


WEIGHT_MIN = -(1 << (WEIGHT_BITS - 1))


WEIGHT_MAX = (1 << (WEIGHT_BITS - 1)) - 1


DELTA_BITS = ACT_BITS + 1  # d = x - x_ref of two int8 values lies in [-255, 255]


ACC_BITS = 32  # accumulator and bias, two's-complement wrap-around


BIAS_BITS = 32


# Requantisation: y = clamp((acc * mult + 2^(shift-1)) >> shift, ACT_MIN, ACT_MAX), with an
# arithmetic (flooring) shift: "round half towards +infinity". mult is unsigned and below
# 2^15, so |acc * mult| + 2^(shift-1) < 2^47 fits one DSP48E2 48-bit accumulator.
REQ_MULT_BITS = 15


REQ_MULT_MAX = (1 << REQ_MULT_BITS) - 1


REQ_SHIFT_MIN = 1


REQ_SHIFT_MAX = 46


# Delta threshold: keep d where |d| >= th; th = 1 keeps every non-zero difference (lossless).
TH_BITS = 8


TH_MIN = 1


TH_MAX = (1 << TH_BITS) - 1


# CSR layout of delta weights over output rows, as stored in DDR and in the export bundle
# (scipy.sparse.csr_matrix((values, indices, indptr)) reads these arrays as they are).
CSR_INDPTR_DTYPE = np.dtype("<i4")


CSR_INDEX_DTYPE = np.dtype("<u2")


CSR_VALUE_DTYPE = np.dtype("i1")


MAX_DIM = (1 << 16) - 1  # tokens, in and out dims are 16-bit fields; indices are uint16


class Mode(enum.IntEnum):
    DENSE = 0
    TEMPORAL = 1
    TASK = 2


class JobFlag(enum.IntFlag):
    NONE = 0
    LOAD_W = 1  # the packet carries W_b; otherwise the resident weight bank is used
    LOAD_REF = 2  # the packet carries x_ref and y_ref (TEMPORAL, TASK); else resident ones
    EMIT_REF = 4  # the output carries the updated x_ref and y_ref (or x_k and acc in TASK)


VALID_FLAGS = int(JobFlag.LOAD_W | JobFlag.LOAD_REF | JobFlag.EMIT_REF)


# ---------------------------------------------------------------------------------------
# The arithmetic, executable (numpy): the golden model and the tests call these.
# ---------------------------------------------------------------------------------------
def wrap_int32(values: np.ndarray) -> np.ndarray:
    """Two's-complement wrap of integer values to int32 (the accumulator's behaviour)."""
    return np.asarray(values, dtype=np.int64).astype(np.uint32).view(np.int32)


def quantize_activation(x: np.ndarray, scale: float) -> np.ndarray:
    """Float -> int8 at a site input: round half to even (numpy rint == torch.round), clamp."""
    if not scale > 0:
        raise ValueError(f"activation scale must be positive, got {scale!r}")
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(scale))
    return np.clip(q, ACT_MIN, ACT_MAX).astype(np.int8)


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """int32 accumulators [..., O] -> int8 with per-output-channel (mult, shift)."""
    mult64 = np.asarray(mult, dtype=np.int64)
    shift64 = np.asarray(shift, dtype=np.int64)
    if np.any((mult64 < 0) | (mult64 > REQ_MULT_MAX)):
        raise ValueError(f"requant multiplier outside [0, {REQ_MULT_MAX}]")
    if np.any((shift64 < REQ_SHIFT_MIN) | (shift64 > REQ_SHIFT_MAX)):
        raise ValueError(f"requant shift outside [{REQ_SHIFT_MIN}, {REQ_SHIFT_MAX}]")
    prod = np.asarray(acc, dtype=np.int32).astype(np.int64) * mult64
    rounded = (prod + (np.int64(1) << (shift64 - 1))) >> shift64
    return np.clip(rounded, ACT_MIN, ACT_MAX).astype(np.int8)


def choose_requant(real_multiplier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel real multiplier (s_x * s_w[o] / s_y) -> (mult uint16, shift uint8).

    Picks the largest shift whose rounded multiplier still fits REQ_MULT_BITS, which keeps
    the most precision. Raises if a multiplier is negative, not finite, or too large.
    """
    r = np.asarray(real_multiplier, dtype=np.float64)
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        bad = int(np.flatnonzero(~np.isfinite(r) | (r < 0))[0])
        raise ValueError(f"requant: real multiplier of channel {bad} is {r.flat[bad]!r}")
    mult = np.zeros(r.shape, dtype=np.uint16)
    shift = np.full(r.shape, REQ_SHIFT_MAX, dtype=np.uint8)
    for idx in np.ndindex(r.shape):
        value = r[idx]
        if value == 0.0:
            continue
        s = REQ_SHIFT_MAX
        while s >= REQ_SHIFT_MIN and round(value * 2.0**s) > REQ_MULT_MAX:
            s -= 1
        if s < REQ_SHIFT_MIN:
            raise ValueError(
                f"requant: real multiplier {value!r} of channel {idx} needs a shift below "
                f"{REQ_SHIFT_MIN}; output scale is too small for this site"
            )
        mult[idx] = round(value * 2.0**s)
        shift[idx] = s
    return mult, shift


def keep_delta(x: np.ndarray, x_ref: np.ndarray, th: int) -> np.ndarray:
    """Delta encoding: d = x - x_ref, zeroed where |d| < th. Returns int16 (range +-255)."""
    check_threshold(th)
    d = np.asarray(x, dtype=np.int16) - np.asarray(x_ref, dtype=np.int16)
    d[np.abs(d) < th] = 0
    return d


def check_threshold(th: int) -> None:
    if not (TH_MIN <= int(th) <= TH_MAX):
        raise ValueError(f"delta threshold th={th!r} outside [{TH_MIN}, {TH_MAX}]")
