"""DDR job layout for the fetch and commit kernels: the descriptor and its regions.

One job occupies one byte buffer: the descriptor (``DESC_BYTES``, contract DESC_* words)
followed by every region the job uses (``contract.regions_used``), each at a
``REGION_ALIGN``-aligned offset and padded to whole 64-bit words, because the kernels
access memory in whole words (hls/include/dmtl_desc.h). Unused regions are written as
offset 0 and never accessed. The emulator (``deltamtl.hls.emulator``) and the PYNQ host
driver lay jobs out with these functions, so the board and the emulation read the same
bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from deltamtl.contract import (
    CONTRACT_VERSION,
    DESC_BYTES,
    DESC_MAGIC,
    DESC_WORD_HEADER,
    DESC_WORD_MAGIC,
    DESC_WORD_REGIONS,
    DESC_WORD_VERSION,
    DESC_WORDS,
    OUTPUT_REGIONS,
    REGION_ALIGN,
    JobFlag,
    Mode,
    Region,
    region_bytes,
    regions_used,
)
from deltamtl.model.golden_core import SiteJob, pack_header, parse_header


def align(n: int, to: int = REGION_ALIGN) -> int:
    return -(-int(n) // to) * to


@dataclass
class JobLayout:
    """Where one job lives in its buffer (byte offsets from the buffer base)."""

    header_words: tuple[int, int]
    desc_offset: int
    offsets: dict[Region, int] = field(default_factory=dict)  # used regions only
    buf_bytes: int = 0

    @property
    def header(self) -> dict[str, int]:
        return parse_header(np.array(self.header_words, dtype=np.uint64))

    def region_size(self, region: Region) -> int:
        h = self.header
        return region_bytes(region, h["tokens"], h["in_dim"], h["out_dim"], h["nnz_dw"])


def plan_layout(header_words: tuple[int, int], desc_offset: int = 0) -> JobLayout:
    """Descriptor at ``desc_offset`` (aligned), then the used regions in Region order."""
    if desc_offset % REGION_ALIGN:
        raise ValueError(f"desc_offset={desc_offset} is not a multiple of {REGION_ALIGN}")
    layout = JobLayout(tuple(int(w) for w in header_words), desc_offset)
    h = layout.header
    pos = desc_offset + DESC_BYTES
    for region in regions_used(Mode(h["mode"]), JobFlag(h["flags"]), h["nnz_dw"]):
        layout.offsets[region] = pos
        pos += align(layout.region_size(region))
    layout.buf_bytes = align(pos)
    return layout


def pack_descriptor(header_words: tuple[int, int], offsets: dict[Region, int]) -> bytes:
    """The DESC_BYTES descriptor: magic, version, header (2 x 64 bit), one offset per Region."""
    words = [0] * DESC_WORDS
    words[DESC_WORD_MAGIC] = DESC_MAGIC
    words[DESC_WORD_VERSION] = CONTRACT_VERSION
    for k, hw in enumerate(header_words):
        words[DESC_WORD_HEADER + 2 * k] = int(hw) & 0xFFFFFFFF
        words[DESC_WORD_HEADER + 2 * k + 1] = (int(hw) >> 32) & 0xFFFFFFFF
    for region, off in offsets.items():
        if not 0 <= int(off) < (1 << 64):
            raise ValueError(f"descriptor: region {Region(region).name} offset {off} out of range")
        words[DESC_WORD_REGIONS + 2 * int(region)] = int(off) & 0xFFFFFFFF
        words[DESC_WORD_REGIONS + 2 * int(region) + 1] = int(off) >> 32
    return struct.pack(f"<{DESC_WORDS}I", *words)


def _region_arrays(job: SiteJob) -> dict[Region, np.ndarray]:
    """The job's input data as the region dtypes (contract.Region comments)."""
    o = job.out_dim
    arrays = {
        Region.REQ_MULT: np.asarray(job.req_mult, dtype="<u2"),
        Region.REQ_SHIFT: np.asarray(job.req_shift, dtype="u1"),
        Region.X: np.asarray(job.x, dtype="i1"),
    }
    if job.w is not None:
        arrays[Region.W] = np.asarray(job.w, dtype="i1")
    if job.nnz_dw:
        arrays[Region.DW_INDPTR] = np.asarray(job.dw.indptr, dtype="<i4")
        arrays[Region.DW_INDICES] = np.asarray(job.dw.indices, dtype="<u2")
        arrays[Region.DW_VALUES] = np.asarray(job.dw.values, dtype="i1")
    if job.bias is not None:
        arrays[Region.BIAS] = np.asarray(job.bias, dtype="<i4").reshape(o)
    if job.x_ref is not None:
        arrays[Region.XREF] = np.asarray(job.x_ref, dtype="i1")
        arrays[Region.YREF] = np.asarray(job.y_ref, dtype="<i4")
    return arrays


def layout_job(job: SiteJob, desc_offset: int = 0, fill: int = 0) -> tuple[np.ndarray, JobLayout]:
    """A fresh buffer (uint8, ``fill`` in every byte the job does not define) holding the
    descriptor and the job's input regions; output regions are left as ``fill``."""
    layout = plan_layout(tuple(pack_header(job)), desc_offset)
    buf = np.full(layout.buf_bytes, fill, dtype=np.uint8)
    write_job(buf, layout, job)
    return buf, layout


def write_job(buf: np.ndarray, layout: JobLayout, job: SiteJob) -> None:
    """Write the descriptor and every used input region of ``job`` into ``buf``."""
    desc = np.frombuffer(pack_descriptor(layout.header_words, layout.offsets), dtype=np.uint8)
    buf[layout.desc_offset: layout.desc_offset + DESC_BYTES] = desc
    arrays = _region_arrays(job)
    for region, off in layout.offsets.items():
        if region in OUTPUT_REGIONS:
            continue
        if region not in arrays:
            raise ValueError(f"job (tag {job.tag}) uses region {region.name} but has no data for it")
        raw = np.ascontiguousarray(arrays[region]).view(np.uint8).reshape(-1)
        if raw.size != layout.region_size(region):
            raise ValueError(f"region {region.name}: {raw.size} bytes of data, layout says "
                             f"{layout.region_size(region)}")
        buf[off: off + raw.size] = raw


def read_outputs(buf: np.ndarray, layout: JobLayout) -> dict[str, np.ndarray]:
    """Y (int8 [P, O]) and, with EMIT_REF, x_ref (int8 [P, I]) and y_ref (int32 [P, O])."""
    h = layout.header
    p, i, o = h["tokens"], h["in_dim"], h["out_dim"]

    def region(r: Region, dtype: str, shape: tuple[int, int]) -> np.ndarray:
        off = layout.offsets[r]
        raw = np.asarray(buf[off: off + layout.region_size(r)], dtype=np.uint8)
        return raw.view(dtype).reshape(shape).copy()

    out = {"y": region(Region.Y_OUT, "i1", (p, o))}
    if Region.XREF_OUT in layout.offsets:
        out["x_ref"] = region(Region.XREF_OUT, "i1", (p, i))
        out["y_ref"] = region(Region.YREF_OUT, "<i4", (p, o))
    return out
