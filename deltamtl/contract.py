"""The integer and interface contract: defined here once, imported or generated everywhere else.

Everything that two levels of the stack must agree on bit for bit lives in this module:
number formats, the one rounding rule, delta encoding, the three site modes, the
AXI4-Stream packet layout of the compute core, the DDR job descriptor read by the fetch
and commit kernels, their status bits and their AXI4-Lite register map.

C++ headers (hls/generated/contract.h) and the SystemVerilog package
(rtl/generated/deltamtl_contract_pkg.sv) are generated from this file by
``deltamtl.codegen``; a test regenerates them and fails if the checked-in copies drift.

Site arithmetic (BRIEF section 3), with P tokens, I inputs, O outputs:

* DENSE:    acc = X (W_b + dW)^T + bias;  Y = requant(acc);  state: x_ref := X, y_ref := acc.
* TEMPORAL: d = keep(X - x_ref, th);  x_ref += d;  y_ref += d (W_b + dW)^T;  Y = requant(y_ref).
* TASK:     d = keep(X - x_ref_b, th);  x_k = x_ref_b + d;
            acc = y_ref_b + d W_b^T + x_k dW^T + bias;  Y = requant(acc).
            The base state (x_ref_b, y_ref_b) is read, never written; (x_k, acc) can be emitted
            so a sub-task keyframe above its boundary stores its own references.

``bias`` is the job's bias section: the full bias b_k = b_b + db_k in DENSE, the bias delta
db_k in TASK (y_ref_b already holds b_b), absent in TEMPORAL (y_ref already holds it).
The accumulator is int32 with two's-complement wrap-around at every addition, so any
implementation that accumulates in int32 agrees with the numpy definition here.

Preconditions the producers of jobs guarantee (the export loader and the packers check
them; hardware is only required to stay inside its buffers when they are broken):
* W_b + dW stays inside int8. DENSE/TEMPORAL jobs with dW patch the int8 weight bank, so a
  merged weight outside int8 wraps modulo 256 (the golden model does the same).
* requantisation parameters lie in [0, REQ_MULT_MAX] x [REQ_SHIFT_MIN, REQ_SHIFT_MAX].
* dW non-zero words may come in any order (each carries its row); fetch sends CSR order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

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


# ---------------------------------------------------------------------------------------
# AXI4-Stream packets of the compute core (fetch -> core -> commit)
# ---------------------------------------------------------------------------------------
STREAM_DATA_BITS = 64  # TDATA width of every core stream; TLAST marks a packet's last word
WORD_BYTES = STREAM_DATA_BITS // 8
INT8_PER_WORD = WORD_BYTES  # int8 rows are packed little-endian, element j in byte j
INT32_PER_WORD = WORD_BYTES // 4  # int32 rows: element j in bits [32j+31 : 32j]


@dataclass(frozen=True)
class Field:
    """A bit field of a stream word: ``word`` index within its record, lsb, width."""

    name: str
    word: int
    lsb: int
    width: int

    def get(self, words: list[int] | tuple[int, ...]) -> int:
        return (int(words[self.word]) >> self.lsb) & ((1 << self.width) - 1)

    def put(self, words: list[int], value: int) -> None:
        if not 0 <= int(value) < (1 << self.width):
            raise ValueError(f"field {self.name}={value!r} does not fit {self.width} bits")
        words[self.word] |= int(value) << self.lsb


# Job header: the first HEADER_WORDS words of every core input packet.
HEADER_WORDS = 2
HEADER_FIELDS: tuple[Field, ...] = (
    Field("mode", 0, 0, 2),
    Field("flags", 0, 2, 6),
    Field("th", 0, 8, 8),
    Field("tokens", 0, 16, 16),
    Field("in_dim", 0, 32, 16),
    Field("out_dim", 0, 48, 16),
    Field("nnz_dw", 1, 0, 32),
    Field("tag", 1, 32, 16),
)

# One delta-weight non-zero per word (CSR walked in row order by the fetch kernel).
NZ_FIELDS: tuple[Field, ...] = (
    Field("col", 0, 0, 16),
    Field("row", 0, 16, 16),
    Field("value", 0, 32, 8),  # int8, two's complement
)

# Requantisation parameters: one 32-bit entry per output channel, INT32_PER_WORD per word.
REQ_ENTRY_BITS = 32
REQ_FIELDS: tuple[Field, ...] = (
    Field("mult", 0, 0, 16),
    Field("shift", 0, 16, 6),
)

# Trailer: the last word of every core output packet.
TRAILER_FIELDS: tuple[Field, ...] = (
    Field("nnz_act", 0, 0, 32),  # activation non-zeros broadcast to the MAC lanes
    Field("tag", 0, 32, 16),
    Field("status", 0, 48, 8),
)


class CoreStatus(enum.IntFlag):
    """Core trailer status. A job with any bit set produced no Y and changed no state."""

    OK = 0
    BAD_HEADER = 1  # unknown mode or flag bits, th outside [TH_MIN, TH_MAX]
    DIMS = 2  # a dimension is zero or above the compiled maxima, or O*I above max_weights
    NNZ = 4  # nnz_dw above the compiled maximum
    INDEX = 8  # a dW non-zero names a row or column outside [O, I]
    NO_STATE = 16  # resident weights/references requested but absent or of other dims
    LENGTH = 32  # TLAST came early or late relative to the header's section sizes


class Section(enum.IntEnum):
    """Packet sections, in stream order (input sections, then output sections)."""

    HEADER = 0
    W = 1  # W_b rows: O rows of ceil(I/8) words
    DW = 2  # nnz_dw non-zero words
    BIAS = 3  # ceil(O/2) words of int32
    REQ = 4  # ceil(O/2) words of (mult, shift)
    XREF = 5  # P rows of ceil(I/8) words
    YREF = 6  # P rows of ceil(O/2) words
    X = 7  # P rows of ceil(I/8) words
    Y = 8  # output: P rows of ceil(O/8) words of int8
    XREF_OUT = 9  # output: P rows of ceil(I/8) words
    YREF_OUT = 10  # output: P rows of ceil(O/2) words
    TRAILER = 11


def words_for(n: int, per_word: int) -> int:
    return -(-int(n) // per_word)


def input_sections(
    mode: Mode, flags: JobFlag, tokens: int, in_dim: int, out_dim: int, nnz_dw: int
) -> list[tuple[Section, int]]:
    """The core input packet: (section, number of words), in stream order."""
    mode, flags = Mode(mode), JobFlag(flags)
    row_i8_in = words_for(in_dim, INT8_PER_WORD)
    row_i32_out = words_for(out_dim, INT32_PER_WORD)
    out: list[tuple[Section, int]] = [(Section.HEADER, HEADER_WORDS)]
    if flags & JobFlag.LOAD_W:
        out.append((Section.W, out_dim * row_i8_in))
    out.append((Section.DW, nnz_dw))
    if mode in (Mode.DENSE, Mode.TASK):
        out.append((Section.BIAS, row_i32_out))
    out.append((Section.REQ, words_for(out_dim, WORD_BYTES * 8 // REQ_ENTRY_BITS)))
    if mode in (Mode.TEMPORAL, Mode.TASK) and flags & JobFlag.LOAD_REF:
        out.append((Section.XREF, tokens * row_i8_in))
        out.append((Section.YREF, tokens * row_i32_out))
    out.append((Section.X, tokens * row_i8_in))
    return [(s, n) for s, n in out if n > 0]


def output_sections(
    flags: JobFlag, tokens: int, in_dim: int, out_dim: int, ok: bool = True
) -> list[tuple[Section, int]]:
    """The core output packet: (section, number of words). A refused job sends the trailer only."""
    if not ok:
        return [(Section.TRAILER, 1)]
    out = [(Section.Y, tokens * words_for(out_dim, INT8_PER_WORD))]
    if JobFlag(flags) & JobFlag.EMIT_REF:
        out.append((Section.XREF_OUT, tokens * words_for(in_dim, INT8_PER_WORD)))
        out.append((Section.YREF_OUT, tokens * words_for(out_dim, INT32_PER_WORD)))
    out.append((Section.TRAILER, 1))
    return out


# ---------------------------------------------------------------------------------------
# DDR job descriptor (read by fetch and commit) and the kernels' status bits
# ---------------------------------------------------------------------------------------
DESC_MAGIC = 0x4C544D44  # b"DMTL" little-endian
REGION_ALIGN = 8  # every region offset is a multiple of one stream word


class Region(enum.IntEnum):
    """Buffer regions a descriptor names, as byte offsets from the buffer base."""

    W = 0  # int8 [O, I] row-major
    DW_INDPTR = 1  # int32 [O + 1]
    DW_INDICES = 2  # uint16 [nnz]
    DW_VALUES = 3  # int8 [nnz]
    BIAS = 4  # int32 [O]
    REQ_MULT = 5  # uint16 [O]
    REQ_SHIFT = 6  # uint8 [O]
    XREF = 7  # int8 [P, I]
    YREF = 8  # int32 [P, O]
    X = 9  # int8 [P, I]
    Y_OUT = 10  # int8 [P, O]
    XREF_OUT = 11  # int8 [P, I]
    YREF_OUT = 12  # int32 [P, O]


OUTPUT_REGIONS = (Region.Y_OUT, Region.XREF_OUT, Region.YREF_OUT)

# Descriptor words (uint32, little-endian). The header words are the core header verbatim.
DESC_WORD_MAGIC = 0
DESC_WORD_VERSION = 1
DESC_WORD_HEADER = 2  # 4 words: header word 0 (lo, hi), header word 1 (lo, hi)
DESC_WORD_REGIONS = 6  # 2 words (lo, hi) per Region, in Region order
DESC_WORDS = DESC_WORD_REGIONS + 2 * len(Region)
DESC_BYTES = 4 * DESC_WORDS


def region_bytes(region: Region, tokens: int, in_dim: int, out_dim: int, nnz_dw: int) -> int:
    sizes = {
        Region.W: out_dim * in_dim,
        Region.DW_INDPTR: 4 * (out_dim + 1),
        Region.DW_INDICES: 2 * nnz_dw,
        Region.DW_VALUES: nnz_dw,
        Region.BIAS: 4 * out_dim,
        Region.REQ_MULT: 2 * out_dim,
        Region.REQ_SHIFT: out_dim,
        Region.XREF: tokens * in_dim,
        Region.YREF: 4 * tokens * out_dim,
        Region.X: tokens * in_dim,
        Region.Y_OUT: tokens * out_dim,
        Region.XREF_OUT: tokens * in_dim,
        Region.YREF_OUT: 4 * tokens * out_dim,
    }
    return sizes[Region(region)]


# Element sizes of the DDR regions (bytes), the factors of region_bytes: int32 rows (bias,
# y_ref, YREF_OUT), uint32 row pointers, uint16 column indices and requant multipliers. The
# HLS fetch/commit kernels take them from the generated contract.h (docs/hls.md).
INT32_BYTES = 4
INDPTR_BYTES = 4
INDEX_BYTES = 2
REQ_MULT_BYTES = 2


def regions_used(mode: Mode, flags: JobFlag, nnz_dw: int) -> list[Region]:
    """Regions a job reads or writes; unused ones are ignored (and never accessed)."""
    mode, flags = Mode(mode), JobFlag(flags)
    used = [Region.REQ_MULT, Region.REQ_SHIFT, Region.X, Region.Y_OUT]
    if flags & JobFlag.LOAD_W:
        used.append(Region.W)
    if nnz_dw > 0:
        used += [Region.DW_INDPTR, Region.DW_INDICES, Region.DW_VALUES]
    if mode in (Mode.DENSE, Mode.TASK):
        used.append(Region.BIAS)
    if mode in (Mode.TEMPORAL, Mode.TASK) and flags & JobFlag.LOAD_REF:
        used += [Region.XREF, Region.YREF]
    if flags & JobFlag.EMIT_REF:
        used += [Region.XREF_OUT, Region.YREF_OUT]
    return sorted(used)


class KernelStatus(enum.IntFlag):
    """Status register of fetch and commit. Any error bit: the kernel touched no memory
    beyond the descriptor (fetch) or wrote nothing (commit)."""

    OK = 0
    DONE = 1  # the run finished (set on success and on refusal)
    BAD_DESC = 2  # magic, version, mode or flag bits wrong
    DIMS = 4  # a dimension zero or above the compiled maxima, O*I above max_weights, or nnz
    #           above its maximum
    REGION = 8  # a used region (or the descriptor) outside the declared buffer or misaligned
    OVERLAP = 16  # an output region overlaps another used region or the descriptor
    CSR = 32  # row pointers not monotone, not 0..nnz, or a column index >= in_dim
    CORE = 64  # commit: the core's trailer reported an error
    TAG = 128  # commit: the trailer's tag differs from the descriptor's


# ---------------------------------------------------------------------------------------
# AXI4-Lite register map of fetch and commit (ap_ctrl_hs, Vitis HLS offset convention)
# ---------------------------------------------------------------------------------------
REG_CTRL = 0x00  # bit0 ap_start, bit1 ap_done (clear on read), bit2 ap_idle, bit3 ap_ready
REG_GIE = 0x04
REG_IER = 0x08
REG_ISR = 0x0C
CTRL_START = 0x1
CTRL_DONE = 0x2
CTRL_IDLE = 0x4
CTRL_READY = 0x8


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    bits: int  # 32 or 64 (64-bit values are two words, low word first)
    direction: str  # "in" (host writes) or "out" (kernel writes, with an ap_vld word after)


KERNEL_ARGS: tuple[Register, ...] = (
    Register("gmem", 0x10, 64, "in"),  # buffer base address (physical)
    Register("buf_bytes", 0x1C, 64, "in"),  # size the host declares for that buffer
    Register("desc_offset", 0x28, 64, "in"),  # descriptor's byte offset inside the buffer
    Register("status", 0x34, 32, "out"),  # KernelStatus; valid bit in the word at 0x38
)
REG_STATUS_CTRL = 0x38


def register(name: str) -> Register:
    for reg in KERNEL_ARGS:
        if reg.name == name:
            return reg
    raise KeyError(f"no kernel register named {name!r}")


# ---------------------------------------------------------------------------------------
# Compiled maxima of one core build (generated into hls/generated/params.h and the SV
# parameters from a model's export manifest by deltamtl.codegen)
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CoreLimits:
    """Compiled maxima. ``max_weights`` bounds O*I of one site (the weight bank's size),
    which is far below max_out * max_in for a ViT (no site is both 768 wide and 768 tall);
    0 means max_in * max_out."""

    max_tokens: int
    max_in: int
    max_out: int
    max_nnz_dw: int
    lanes: int = 32
    max_weights: int = 0

    def __post_init__(self) -> None:
        if self.max_weights == 0 and isinstance(self.max_in, int) and isinstance(self.max_out, int):
            object.__setattr__(self, "max_weights", self.max_in * self.max_out)
        for name in ("max_tokens", "max_in", "max_out", "max_nnz_dw", "lanes", "max_weights"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 1 <= value <= (1 << 24)):
                raise ValueError(f"CoreLimits.{name}={value!r} must be an int in [1, 2^24]")
        for name in ("max_tokens", "max_in", "max_out"):
            if getattr(self, name) > MAX_DIM:
                raise ValueError(f"CoreLimits.{name} above the 16-bit field maximum {MAX_DIM}")
        if not max(self.max_in, self.max_out) <= self.max_weights <= self.max_in * self.max_out:
            raise ValueError(
                f"CoreLimits.max_weights={self.max_weights} must lie in "
                f"[max(max_in, max_out), max_in * max_out] = "
                f"[{max(self.max_in, self.max_out)}, {self.max_in * self.max_out}]"
            )


# Maxima large enough for the embedded `tiny` config (64 tokens, width <= 96, MLP x4):
# the largest site is fc1/fc2 with 96 x 384 weights.
TINY_LIMITS = CoreLimits(max_tokens=64, max_in=384, max_out=384, max_nnz_dw=384 * 96, lanes=32,
                         max_weights=384 * 96)
