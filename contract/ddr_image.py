"""DDR job layout for the fetch and commit kernels: the descriptor and its regions.

One job occupies one byte buffer: the descriptor (``DESC_BYTES``, contract DESC_* words)
followed by every region the job uses (``descriptor.regions_used``), each at a
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
from deltamtl.contract.atomic import atomic_write_bytes
from deltamtl.contract.descriptor import (
    DESC_BYTES,
    DESC_MAGIC,
    DESC_WORD_HEADER,
    DESC_WORD_MAGIC,
    DESC_WORD_REGIONS,
    DESC_WORD_VERSION,
    DESC_WORDS,
    OUTPUT_REGIONS,
    REGION_ALIGN,
    Region,
    region_bytes,
    regions_used,
)
from deltamtl.contract.encoding import pack_header, parse_header
from deltamtl.contract.file_layouts import (
    DMTD_CASE_HEADER,
    DMTD_FILE_HEADER,
    DMTD_MAGIC,
    DMTD_VERSION,
    LIMIT_FIELDS,
    VectorFileError,
    read_file_bytes,
    read_file_header,
)
from deltamtl.contract.formats import CONTRACT_VERSION, JobFlag, Mode
from deltamtl.contract.jobs import SiteJob


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


def validate_descriptor(buf: np.ndarray, buf_bytes: int, desc_offset: int, limits) -> int:
    """The fetch/commit validation (hls/include/dmtl_desc.h) in Python: 0 or the one
    KernelStatus error bit the kernels set. The host can check a job before starting the
    board; the tests hold the C++ kernels to it."""
    from deltamtl.contract.descriptor import (
        DESC_BYTES,
        DESC_MAGIC,
        DESC_WORD_HEADER,
        DESC_WORD_MAGIC,
        DESC_WORD_VERSION,
    )
    from deltamtl.contract.formats import CONTRACT_VERSION, VALID_FLAGS
    from deltamtl.contract.registers import KernelStatus

    buf = np.asarray(buf, dtype=np.uint8)
    buf_bytes, desc_offset = int(buf_bytes), int(desc_offset)

    def inside(off: int, size: int) -> bool:
        return off % REGION_ALIGN == 0 and off <= buf_bytes and align(size, 8) <= buf_bytes - off

    if not inside(desc_offset, DESC_BYTES):
        return int(KernelStatus.REGION)
    # the descriptor's bytes only: the host validates jobs inside a large DDR buffer
    words = struct.unpack_from(f"<{DESC_WORDS}I", buf[desc_offset: desc_offset + DESC_BYTES].tobytes())
    hw = [words[DESC_WORD_HEADER + 2 * k] | (words[DESC_WORD_HEADER + 2 * k + 1] << 32)
          for k in range(2)]
    h = parse_header(np.array(hw, dtype=np.uint64))
    if words[DESC_WORD_MAGIC] != DESC_MAGIC or words[DESC_WORD_VERSION] != CONTRACT_VERSION:
        return int(KernelStatus.BAD_DESC)
    if h["mode"] > int(Mode.TASK) or h["flags"] & ~VALID_FLAGS:
        return int(KernelStatus.BAD_DESC)
    p, i, o, nnz = h["tokens"], h["in_dim"], h["out_dim"], h["nnz_dw"]
    if not (1 <= p <= limits.max_tokens and 1 <= i <= limits.max_in and 1 <= o <= limits.max_out
            and o * i <= limits.max_weights and nnz <= limits.max_nnz_dw):
        return int(KernelStatus.DIMS)
    used = regions_used(Mode(h["mode"]), JobFlag(h["flags"]), nnz)
    off = {r: words[DESC_WORD_REGIONS + 2 * int(r)] | (words[DESC_WORD_REGIONS + 2 * int(r) + 1] << 32)
           for r in used}
    size = {r: region_bytes(r, p, i, o, nnz) for r in used}
    if not all(inside(off[r], size[r]) for r in used):
        return int(KernelStatus.REGION)

    def overlap(a: int, an: int, b: int, bn: int) -> bool:
        return a < b + align(bn, 8) and b < a + align(an, 8)

    for a in (r for r in used if r in OUTPUT_REGIONS):
        if overlap(off[a], size[a], desc_offset, DESC_BYTES) or any(
                b != a and overlap(off[a], size[a], off[b], size[b]) for b in used):
            return int(KernelStatus.OVERLAP)
    if nnz:
        at = off[Region.DW_INDPTR]
        indptr = np.frombuffer(buf[at: at + 4 * (o + 1)].tobytes(), dtype="<i4")
        at = off[Region.DW_INDICES]
        indices = np.frombuffer(buf[at: at + 2 * nnz].tobytes(), dtype="<u2")
        if (indptr[0] != 0 or np.any(np.diff(indptr.astype(np.int64)) < 0)
                or int(indptr[-1]) != nnz or int(indices.max()) >= i):
            return int(KernelStatus.CSR)
    return 0


# ---------------------------------------------------------------------------------------
# DDR test images for the C++ system testbench (hls/tb/tb_system.cpp, Vitis csim/cosim of
# fetch and commit). File format ``.dmtd`` (little-endian; the headers are defined once in
# deltamtl.contract.file_layouts and reach tb_system.cpp as hls/generated/vector_files.h):
#   file header (DMTD_FILE_HEADER): magic "DMTD", version, n_cases, the limits (LIMIT_FIELDS)
#   per case: case header (DMTD_CASE_HEADER): reset (1: reset the core), expected fetch
#             status, expected commit status, 0, buf_bytes, desc_offset, image_bytes;
#             image_bytes of memory before, image_bytes of memory expected after.
# Cases run in order on one core (resident state carries over, as in .dmtv files).
# ---------------------------------------------------------------------------------------
DDR_MAGIC = DMTD_MAGIC
DDR_VERSION = DMTD_VERSION


@dataclass
class DdrCase:
    name: str
    before: np.ndarray  # uint8 image handed to the kernels
    after: np.ndarray  # uint8 image expected afterwards
    buf_bytes: int = 0
    desc_offset: int = 0
    fetch_status: int = 0
    commit_status: int = 0
    reset: bool = False


def write_ddr_cases(path, cases: list[DdrCase], limits) -> None:
    """Write cases atomically (temporary file in the same folder, then rename)."""
    parts = [DMTD_FILE_HEADER.pack(magic=DDR_MAGIC, version=DDR_VERSION, n_cases=len(cases),
                                   **{f: getattr(limits, f) for f in LIMIT_FIELDS})]
    for c in cases:
        if c.before.size != c.after.size:
            raise ValueError(f"case {c.name}: before/after images differ in size")
        parts.append(DMTD_CASE_HEADER.pack(reset=int(c.reset), fetch_status=c.fetch_status,
                                           commit_status=c.commit_status,
                                           buf_bytes=c.buf_bytes, desc_offset=c.desc_offset,
                                           image_bytes=c.before.size))
        parts.append(np.asarray(c.before, np.uint8).tobytes())
        parts.append(np.asarray(c.after, np.uint8).tobytes())
    atomic_write_bytes(path, b"".join(parts))


def read_ddr_cases(path) -> tuple:
    """Read and validate a .dmtd file: (CoreLimits, list of DdrCase named ``case<k>``).

    Anything malformed is a :class:`VectorFileError`, one line naming the file, the case
    index, the field and its value (the C++ tb_system reads the same layout)."""
    from deltamtl.contract.registers import KernelStatus

    known = 0
    for bit in KernelStatus:
        known |= int(bit)
    data = read_file_bytes(path)
    head, limits = read_file_header(path, data, DMTD_FILE_HEADER, DDR_MAGIC, DDR_VERSION,
                                    "n_cases", DMTD_CASE_HEADER.size)
    pos, cases = DMTD_FILE_HEADER.size, []
    for k in range(head["n_cases"]):
        where = f"{path}: case {k}"
        h = DMTD_CASE_HEADER.read(data, pos, where)
        pos += DMTD_CASE_HEADER.size
        n = h["image_bytes"]
        if h["reset"] not in (0, 1):
            raise VectorFileError(f"{where}: reset {h['reset']}, expected 0 or 1")
        if h["reserved"]:
            raise VectorFileError(f"{where}: reserved {h['reserved']}, expected 0")
        for name in ("fetch_status", "commit_status"):
            if h[name] & ~known:
                raise VectorFileError(f"{where}: {name} {h[name]:#x} has unknown KernelStatus "
                                      f"bits {h[name] & ~known:#x}")
        if h["reset"] and (n or h["buf_bytes"] or h["desc_offset"]):
            raise VectorFileError(f"{where}: reset case with image_bytes {n}, buf_bytes "
                                  f"{h['buf_bytes']}, desc_offset {h['desc_offset']} (all must be 0)")
        if h["buf_bytes"] > n:
            raise VectorFileError(f"{where}: buf_bytes {h['buf_bytes']} beyond image_bytes {n}")
        if pos + 2 * n > len(data):
            raise VectorFileError(f"{where}: image_bytes {n}: two images of {2 * n} bytes, "
                                  f"{len(data) - pos} left in the file")
        before = np.frombuffer(data, np.uint8, count=n, offset=pos).copy()
        after = np.frombuffer(data, np.uint8, count=n, offset=pos + n).copy()
        pos += 2 * n
        cases.append(DdrCase(f"case{k}", before, after, h["buf_bytes"], h["desc_offset"],
                             h["fetch_status"], h["commit_status"], bool(h["reset"])))
    if pos != len(data):
        raise VectorFileError(f"{path}: {len(data) - pos} trailing bytes after the "
                              f"{head['n_cases']} cases of n_cases")
    return limits, cases


def _put_u32(buf: np.ndarray, at: int, value: int) -> None:
    buf[at: at + 4] = np.frombuffer(struct.pack("<I", value & 0xFFFFFFFF), np.uint8)


def refusal_variants(buf: np.ndarray, layout: JobLayout) -> list[tuple[str, int, np.ndarray, int]]:
    """Malformed copies of a valid job image: (name, KernelStatus bit, image, buf_bytes).

    Each must be refused by fetch and commit with exactly that bit, memory untouched."""
    from deltamtl.contract.registers import KernelStatus

    def region_word(region: Region) -> int:
        return layout.desc_offset + 4 * (DESC_WORD_REGIONS + 2 * int(region))

    out = []
    b = buf.copy()
    _put_u32(b, layout.desc_offset + 4 * DESC_WORD_MAGIC, 0)
    out.append(("bad_magic", int(KernelStatus.BAD_DESC), b, layout.buf_bytes))
    b = buf.copy()
    _put_u32(b, region_word(Region.X), layout.offsets[Region.X] + 4)
    out.append(("misaligned_x", int(KernelStatus.REGION), b, layout.buf_bytes))
    b = buf.copy()
    _put_u32(b, region_word(Region.X), layout.buf_bytes)
    out.append(("x_beyond_buffer", int(KernelStatus.REGION), b, layout.buf_bytes))
    out.append(("buffer_too_short", int(KernelStatus.REGION), buf.copy(), layout.buf_bytes - 8))
    b = buf.copy()
    _put_u32(b, region_word(Region.Y_OUT), layout.offsets[Region.X])
    out.append(("y_overlaps_x", int(KernelStatus.OVERLAP), b, layout.buf_bytes))
    if Region.DW_INDPTR in layout.offsets:
        b = buf.copy()
        _put_u32(b, layout.offsets[Region.DW_INDPTR], 1)
        out.append(("indptr_not_zero", int(KernelStatus.CSR), b, layout.buf_bytes))
    return out


def ddr_cases_from_records(records, limits, rng: np.random.Generator,
                           variants_every: int = 7) -> list[DdrCase]:
    """DDR cases from .dmtv records: each job laid out in its own image, the expected image
    holds the golden output packet's results. Hand-made malformed packets (which no
    descriptor can express) are left out; they are refusals, so resident state is the same."""
    from deltamtl.contract.encoding import pack_job, unpack_job, unpack_result
    from deltamtl.contract.golden_core import check_header
    from deltamtl.contract.packets import CoreStatus
    from deltamtl.contract.registers import KernelStatus

    if limits.beat_words != 1:  # fetch and commit stream one word per beat (docs/hls.md)
        raise ValueError(f"DDR cases: the system path has beat_words=1, not {limits.beat_words}")
    cases: list[DdrCase] = []
    done = int(KernelStatus.DONE)
    for k, rec in enumerate(records):
        if rec.is_reset:
            empty = np.zeros(0, np.uint8)
            cases.append(DdrCase(f"reset{k}", empty, empty, reset=True))
            continue
        try:
            job = unpack_job(rec.words_in)
            same = np.array_equal(pack_job(job), rec.words_in)
        except (ValueError, IndexError):
            same = False
        if not same:
            if rec.words_out.size != 1:
                raise ValueError(f"record {k} ({rec.cls}): packet not expressible as a "
                                 "descriptor but not refused by the golden either")
            continue
        before, layout = layout_job(job, desc_offset=8 * int(rng.integers(0, 4)),
                                    fill=int(rng.integers(0, 256)))
        after = before.copy()
        hdr = layout.header
        refused = 0
        if check_header(hdr, limits) in (CoreStatus.DIMS, CoreStatus.NNZ):
            refused = int(KernelStatus.DIMS)
        elif job.nnz_dw and int(job.dw.indices.max()) >= hdr["in_dim"]:
            refused = int(KernelStatus.CSR)  # the core's INDEX refusal, caught by fetch
        if refused:
            cases.append(DdrCase(f"{rec.cls}{k}", before, after, layout.buf_bytes,
                                 layout.desc_offset, done | refused, done | refused))
            continue
        result = unpack_result(rec.words_out, job)
        commit = done
        if result.status != CoreStatus.OK:
            commit |= int(KernelStatus.CORE)
        else:
            arrays = {Region.Y_OUT: result.y}
            if result.x_ref is not None:
                arrays[Region.XREF_OUT] = result.x_ref
                arrays[Region.YREF_OUT] = result.y_ref
            for region, arr in arrays.items():
                raw = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
                off = layout.offsets[region]
                after[off: off + raw.size] = raw
        if result.status == CoreStatus.OK and k % variants_every == 0:
            for name, bit, img, declared in refusal_variants(before, layout):
                cases.append(DdrCase(f"{name}{k}", img, img.copy(), declared, layout.desc_offset,
                                     done | bit, done | bit))
        cases.append(DdrCase(f"{rec.cls}{k}", before, after, layout.buf_bytes, layout.desc_offset,
                             done, commit))
    return cases
