"""The DDR job descriptor that fetch and commit read: its words, the regions it points to
(weights, deltas, references, outputs), their sizes and which regions a job uses
(docs/hls.md, "Descriptor").
"""

from __future__ import annotations

import enum

from deltamtl.contract.formats import JobFlag, Mode

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


# Element sizes of the DDR regions (bytes), the factors of region_bytes: int32 rows (bias,
# y_ref, YREF_OUT), uint32 row pointers, uint16 column indices and requant multipliers. The
# HLS fetch/commit kernels take them from the generated contract.h (docs/hls.md).
INT32_BYTES = 4
INDPTR_BYTES = 4
INDEX_BYTES = 2
REQ_MULT_BYTES = 2


def region_bytes(region: Region, tokens: int, in_dim: int, out_dim: int, nnz_dw: int) -> int:
    sizes = {
        Region.W: out_dim * in_dim,
        Region.DW_INDPTR: INDPTR_BYTES * (out_dim + 1),
        Region.DW_INDICES: INDEX_BYTES * nnz_dw,
        Region.DW_VALUES: nnz_dw,
        Region.BIAS: INT32_BYTES * out_dim,
        Region.REQ_MULT: REQ_MULT_BYTES * out_dim,
        Region.REQ_SHIFT: out_dim,
        Region.XREF: tokens * in_dim,
        Region.YREF: INT32_BYTES * tokens * out_dim,
        Region.X: tokens * in_dim,
        Region.Y_OUT: tokens * out_dim,
        Region.XREF_OUT: tokens * in_dim,
        Region.YREF_OUT: INT32_BYTES * tokens * out_dim,
    }
    return sizes[Region(region)]


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
