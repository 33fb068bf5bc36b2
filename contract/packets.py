"""AXI4-Stream packets of the compute core (fetch -> core -> commit): word width, the bit
fields of the header, non-zero, requantiser and trailer words, the order of a packet's
sections and the core's status bits. Field positions live only here; C++ and SV get
generated copies (docs/hls.md, docs/rtl.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from deltamtl.contract.formats import JobFlag, Mode

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

    @property
    def mask(self) -> int:
        """All ones over the field's width: the largest value it holds, and the wrap of a
        counter (a tag) kept in it."""
        return (1 << self.width) - 1

    def get(self, words: list[int] | tuple[int, ...]) -> int:
        return (int(words[self.word]) >> self.lsb) & self.mask

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
