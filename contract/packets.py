"""AXI4-Stream packets of the compute core (fetch -> core -> commit): word width, the bit
fields of the header, non-zero, requantiser and trailer words, the order of a packet's
sections, how sections are laid out in beats of B words, and the core's status bits.
Field positions live only here; C++ and SV get generated copies (docs/hls.md, docs/rtl.md).

Beats (docs/hls.md, "Packet layout"): a stream beat carries B = ``CoreLimits.beat_words``
64-bit words. Every section is padded with zero words to whole beats and a beat never
mixes sections, so that each beat's B words land in B distinct memory banks of the core:

* ``ROW_BLOCK`` (W, XREF, X, XREF_OUT: int8 rows that live in per-lane / per-token banks):
  rows taken in blocks of B (the last block padded with zero rows); beat j of a block is
  word j of its B rows, word r of the beat from row r0 + r.
* ``ROWS`` (YREF, YREF_OUT, Y, and the one-row HEADER, DW, BIAS, REQ, TRAILER): row-major,
  each row padded to a multiple of B words (its words are consecutive channels of one
  token, in distinct accumulator banks).

Padding words are ignored (never refused). B = 1 is the unpadded packet of one word per beat.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from deltamtl.contract.formats import JobFlag, Mode

# ---------------------------------------------------------------------------------------
# AXI4-Stream packets of the compute core (fetch -> core -> commit)
# ---------------------------------------------------------------------------------------
STREAM_DATA_BITS = 64  # bits of one stream word; a beat carries CoreLimits.beat_words of them


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


class SectionLayout(enum.Enum):
    """How a section's rows are spread over beats of B words (module docstring)."""

    ROW_BLOCK = "row_block"  # beat = the same word of B consecutive rows
    ROWS = "rows"  # row-major, each row padded to whole beats


SECTION_LAYOUT: dict[Section, SectionLayout] = {
    **{s: SectionLayout.ROWS for s in Section},
    **{s: SectionLayout.ROW_BLOCK
       for s in (Section.W, Section.XREF, Section.X, Section.XREF_OUT)},
}


@dataclass(frozen=True)
class SectionShape:
    """A section as rows of words before beat padding (row-major, ``rows * row_words``)."""

    section: Section
    rows: int
    row_words: int

    @property
    def layout(self) -> SectionLayout:
        return SECTION_LAYOUT[self.section]

    def words(self, beat_words: int = 1) -> int:
        """Words on the stream, padding included: always whole beats."""
        b = int(beat_words)
        if self.layout is SectionLayout.ROW_BLOCK:
            return words_for(self.rows, b) * b * self.row_words
        return self.rows * words_for(self.row_words, b) * b


HEADER_SHAPE = SectionShape(Section.HEADER, 1, HEADER_WORDS)  # the first beat(s) of every packet


def input_shapes(
    mode: Mode, flags: JobFlag, tokens: int, in_dim: int, out_dim: int, nnz_dw: int
) -> list[SectionShape]:
    """The core input packet's non-empty sections, in stream order, before beat padding."""
    mode, flags = Mode(mode), JobFlag(flags)
    row_i8_in = words_for(in_dim, INT8_PER_WORD)
    row_i32_out = words_for(out_dim, INT32_PER_WORD)
    out = [HEADER_SHAPE]
    if flags & JobFlag.LOAD_W:
        out.append(SectionShape(Section.W, out_dim, row_i8_in))
    out.append(SectionShape(Section.DW, 1, nnz_dw))
    if mode in (Mode.DENSE, Mode.TASK):
        out.append(SectionShape(Section.BIAS, 1, row_i32_out))
    out.append(SectionShape(Section.REQ, 1,
                            words_for(out_dim, WORD_BYTES * 8 // REQ_ENTRY_BITS)))
    if mode in (Mode.TEMPORAL, Mode.TASK) and flags & JobFlag.LOAD_REF:
        out.append(SectionShape(Section.XREF, tokens, row_i8_in))
        out.append(SectionShape(Section.YREF, tokens, row_i32_out))
    out.append(SectionShape(Section.X, tokens, row_i8_in))
    return [s for s in out if s.rows * s.row_words > 0]


def output_shapes(
    flags: JobFlag, tokens: int, in_dim: int, out_dim: int, ok: bool = True
) -> list[SectionShape]:
    """The core output packet's sections before beat padding (refused: the trailer only)."""
    out = []
    if ok:
        out.append(SectionShape(Section.Y, tokens, words_for(out_dim, INT8_PER_WORD)))
        if JobFlag(flags) & JobFlag.EMIT_REF:
            out.append(SectionShape(Section.XREF_OUT, tokens, words_for(in_dim, INT8_PER_WORD)))
            out.append(SectionShape(Section.YREF_OUT, tokens, words_for(out_dim, INT32_PER_WORD)))
    out.append(SectionShape(Section.TRAILER, 1, 1))
    return out


def input_sections(
    mode: Mode, flags: JobFlag, tokens: int, in_dim: int, out_dim: int, nnz_dw: int,
    beat_words: int = 1,
) -> list[tuple[Section, int]]:
    """The core input packet: (section, number of words incl. beat padding), in stream order."""
    return [(s.section, s.words(beat_words))
            for s in input_shapes(mode, flags, tokens, in_dim, out_dim, nnz_dw)]


def output_sections(
    flags: JobFlag, tokens: int, in_dim: int, out_dim: int, ok: bool = True,
    beat_words: int = 1,
) -> list[tuple[Section, int]]:
    """The core output packet: (section, number of words incl. beat padding). A refused job
    sends the trailer beat only."""
    return [(s.section, s.words(beat_words))
            for s in output_shapes(flags, tokens, in_dim, out_dim, ok)]


def packet_beats(sections: list[tuple[Section, int]], beat_words: int = 1) -> int:
    """Beats of a packet given as (section, words) from input_sections/output_sections."""
    words = sum(n for _s, n in sections)
    if words % int(beat_words):
        raise ValueError(f"{words} words are not whole beats of {beat_words}")
    return words // int(beat_words)


def section_offsets(sections: list[tuple[Section, int]]) -> dict[Section, tuple[int, int]]:
    """{section: (first word, number of words)} of a packet laid out by *_sections."""
    out, at = {}, 0
    for section, n in sections:
        out[section] = (at, n)
        at += n
    return out
