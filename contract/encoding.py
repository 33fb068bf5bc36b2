"""Site jobs to and from the core's 64-bit stream words: ``pack_job`` / ``unpack_job`` for
input packets, ``pack_result`` / ``unpack_result`` for output packets, and helpers that
read or patch single fields. The HLS core, the RTL core and the board consume these bits.

Every packer takes ``beat_words`` (B, the core's ``CoreLimits.beat_words``): a packet is
a flat array of words, B per beat, its sections laid out as deltamtl.contract.packets says.
B = 1 (the default) is one word per beat, no padding.
"""

from __future__ import annotations

import numpy as np
from deltamtl.contract.formats import (
    REQ_MULT_MAX,
    REQ_SHIFT_MAX,
    REQ_SHIFT_MIN,
    JobFlag,
    Mode,
)
from deltamtl.contract.jobs import CsrDelta, JobResult, SiteJob
from deltamtl.contract.packets import (
    HEADER_FIELDS,
    HEADER_WORDS,
    INT8_PER_WORD,
    INT32_PER_WORD,
    NZ_FIELDS,
    REQ_FIELDS,
    TRAILER_FIELDS,
    CoreStatus,
    Section,
    SectionLayout,
    SectionShape,
    input_shapes,
    output_shapes,
    words_for,
)

_HDR = {f.name: f for f in HEADER_FIELDS}


_NZ = {f.name: f for f in NZ_FIELDS}


_REQ = {f.name: f for f in REQ_FIELDS}


_TRL = {f.name: f for f in TRAILER_FIELDS}


# ---------------------------------------------------------------------------------------
# Packets
# ---------------------------------------------------------------------------------------
def _pack_rows(a: np.ndarray, per_word: int, dtype: str) -> np.ndarray:
    """[R, N] integers -> R*ceil(N/per_word) uint64 words, zero padded, little-endian lanes."""
    a = np.asarray(a)
    rows, n = a.shape
    padded = np.zeros((rows, words_for(n, per_word) * per_word), dtype=dtype)
    padded[:, :n] = a.astype(dtype)
    return padded.reshape(-1).view("<u8").copy()


def _unpack_rows(words: np.ndarray, rows: int, n: int, per_word: int, dtype: str) -> np.ndarray:
    flat = np.ascontiguousarray(words, dtype="<u8").view(dtype)
    return flat.reshape(rows, -1)[:, :n].copy()


def _to_beats(words: np.ndarray, shape: SectionShape, beat_words: int) -> np.ndarray:
    """A section's row-major words -> its words on the stream, zero padded to whole beats."""
    b, rows, rw = int(beat_words), shape.rows, shape.row_words
    words = np.asarray(words, dtype=np.uint64)
    if words.size != rows * rw:
        raise AssertionError(f"{shape.section.name}: packed {words.size} words, "
                             f"layout says {rows} x {rw}")
    if shape.layout is SectionLayout.ROW_BLOCK:
        padded = np.zeros((words_for(rows, b) * b, rw), np.uint64)
        padded[:rows] = words.reshape(rows, rw)
        # block k, beat j, word r <- row k*B + r, word j
        return padded.reshape(-1, b, rw).transpose(0, 2, 1).reshape(-1)
    padded = np.zeros((rows, words_for(rw, b) * b), np.uint64)
    padded[:, :rw] = words.reshape(rows, rw)
    return padded.reshape(-1)


def _from_beats(chunk: np.ndarray, shape: SectionShape, beat_words: int) -> np.ndarray:
    """The inverse of _to_beats; padding words are dropped whatever they hold."""
    b, rows, rw = int(beat_words), shape.rows, shape.row_words
    chunk = np.asarray(chunk, dtype=np.uint64)
    if shape.layout is SectionLayout.ROW_BLOCK:
        rows_out = chunk.reshape(-1, rw, b).transpose(0, 2, 1).reshape(-1, rw)[:rows]
    else:
        rows_out = chunk.reshape(rows, -1)[:, :rw]
    return rows_out.reshape(-1).copy()  # never a view: callers edit sections in place


def _split(words: np.ndarray, shapes: list[SectionShape], beat_words: int,
           what: str) -> dict[Section, np.ndarray]:
    """A packet -> {section: its row-major words}; raises if the length does not match."""
    sizes = [s.words(beat_words) for s in shapes]
    if words.size != sum(sizes):
        raise ValueError(f"{what} has {words.size} words, its layout {sum(sizes)} "
                         f"({beat_words} words per beat)")
    out, pos = {}, 0
    for shape, n in zip(shapes, sizes, strict=True):
        out[shape.section] = _from_beats(words[pos: pos + n], shape, beat_words)
        pos += n
    return out


def _join(parts: dict[Section, np.ndarray], shapes: list[SectionShape],
          beat_words: int) -> np.ndarray:
    return np.concatenate([_to_beats(parts[s.section], s, beat_words) for s in shapes]
                          ).astype(np.uint64)


def pack_header(job: SiteJob) -> list[int]:
    words = [0] * HEADER_WORDS
    for name, value in job_header(job).items():
        _HDR[name].put(words, value)
    return words


def parse_header(words: np.ndarray) -> dict[str, int]:
    head = [int(w) for w in np.asarray(words, dtype=np.uint64)[:HEADER_WORDS]]
    return {name: f.get(head) for name, f in _HDR.items()}


def _pack_req(mult: np.ndarray, shift: np.ndarray) -> np.ndarray:
    m = np.asarray(mult, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if np.any((m < 0) | (m > REQ_MULT_MAX)) or np.any((s < REQ_SHIFT_MIN) | (s > REQ_SHIFT_MAX)):
        raise ValueError("requant parameters out of contract range")
    entry = (m << _REQ["mult"].lsb) | (s << _REQ["shift"].lsb)
    return _pack_rows(entry[None, :].astype(np.uint32), INT32_PER_WORD, "<u4")


def _pack_nz(dw: CsrDelta) -> np.ndarray:
    rows = dw.rows().astype(np.uint64)
    cols = dw.indices.astype(np.uint64)
    vals = dw.values.astype(np.int8).view(np.uint8).astype(np.uint64)
    return (
        (cols << np.uint64(_NZ["col"].lsb))
        | (rows << np.uint64(_NZ["row"].lsb))
        | (vals << np.uint64(_NZ["value"].lsb))
    )


def pack_job(job: SiteJob, beat_words: int = 1) -> np.ndarray:
    """A SiteJob -> the core's input packet (uint64 words, ``beat_words`` per beat; TLAST
    on the last beat)."""
    parts: dict[Section, np.ndarray] = {
        Section.HEADER: np.array(pack_header(job), dtype=np.uint64)
    }
    p, i, o = job.tokens, job.in_dim, job.out_dim
    flags, mode = JobFlag(int(job.flags)), Mode(int(job.mode))
    if flags & JobFlag.LOAD_W:
        parts[Section.W] = _pack_rows(job.w, INT8_PER_WORD, "i1")
    parts[Section.DW] = _pack_nz(job.dw) if job.nnz_dw else np.zeros(0, np.uint64)
    if mode in (Mode.DENSE, Mode.TASK):
        parts[Section.BIAS] = _pack_rows(np.asarray(job.bias)[None, :], INT32_PER_WORD, "<i4")
    parts[Section.REQ] = _pack_req(job.req_mult, job.req_shift)
    if mode in (Mode.TEMPORAL, Mode.TASK) and flags & JobFlag.LOAD_REF:
        parts[Section.XREF] = _pack_rows(job.x_ref, INT8_PER_WORD, "i1")
        parts[Section.YREF] = _pack_rows(job.y_ref, INT32_PER_WORD, "<i4")
    parts[Section.X] = _pack_rows(job.x, INT8_PER_WORD, "i1")
    return _join(parts, input_shapes(mode, flags, p, i, o, job.nnz_dw), beat_words)


def packet_sections(words: np.ndarray, beat_words: int = 1) -> dict[Section, np.ndarray]:
    """An input packet -> {section: its words, row-major, beat padding dropped}, laid out as
    its header says (raises if the length disagrees). To edit a packet: change sections,
    then ``join_sections``."""
    words = np.asarray(words, dtype=np.uint64)
    hdr = parse_header(words)
    shapes = input_shapes(hdr["mode"], hdr["flags"], hdr["tokens"], hdr["in_dim"],
                          hdr["out_dim"], hdr["nnz_dw"])
    return _split(words, shapes, beat_words, "packet")


def join_sections(sections: dict[Section, np.ndarray], beat_words: int = 1) -> np.ndarray:
    """The inverse of packet_sections: the sections laid out in beats as the header in
    ``sections[Section.HEADER]`` says (sections it does not name are left out)."""
    hdr = parse_header(sections[Section.HEADER])
    shapes = input_shapes(hdr["mode"], hdr["flags"], hdr["tokens"], hdr["in_dim"],
                          hdr["out_dim"], hdr["nnz_dw"])
    return _join(sections, shapes, beat_words)


def unpack_job(words: np.ndarray, beat_words: int = 1) -> SiteJob:
    """The inverse of pack_job (used by tests and to read test vectors)."""
    words = np.asarray(words, dtype=np.uint64)
    hdr = parse_header(words)
    mode, flags = Mode(hdr["mode"]), JobFlag(hdr["flags"])
    p, i, o, nnz = hdr["tokens"], hdr["in_dim"], hdr["out_dim"], hdr["nnz_dw"]
    chunks = packet_sections(words, beat_words)
    req = _unpack_rows(chunks[Section.REQ], 1, o, INT32_PER_WORD, "<u4")[0].astype(np.int64)
    job = SiteJob(
        mode=mode,
        flags=flags,
        th=hdr["th"],
        tag=hdr["tag"],
        out_dim=o,
        x=_unpack_rows(chunks[Section.X], p, i, INT8_PER_WORD, "i1"),
        req_mult=((req >> _REQ["mult"].lsb) & ((1 << _REQ["mult"].width) - 1)).astype(np.uint16),
        req_shift=((req >> _REQ["shift"].lsb) & ((1 << _REQ["shift"].width) - 1)).astype(np.uint8),
    )
    if Section.W in chunks:
        job.w = _unpack_rows(chunks[Section.W], o, i, INT8_PER_WORD, "i1")
    if Section.BIAS in chunks:
        job.bias = _unpack_rows(chunks[Section.BIAS], 1, o, INT32_PER_WORD, "<i4")[0]
    if Section.XREF in chunks:
        job.x_ref = _unpack_rows(chunks[Section.XREF], p, i, INT8_PER_WORD, "i1")
        job.y_ref = _unpack_rows(chunks[Section.YREF], p, o, INT32_PER_WORD, "<i4")
    if nnz:
        nz = chunks[Section.DW].astype(np.uint64)
        cols = ((nz >> np.uint64(_NZ["col"].lsb)) & np.uint64(_NZ["col"].mask)).astype(np.uint16)
        rows = ((nz >> np.uint64(_NZ["row"].lsb)) & np.uint64(_NZ["row"].mask)).astype(np.int64)
        vals = ((nz >> np.uint64(_NZ["value"].lsb)) & np.uint64(_NZ["value"].mask)).astype(np.uint8).view(np.int8)
        if np.any(rows >= o):
            raise ValueError(f"dW non-zero names row {int(rows.max())} >= out_dim {o}")
        # each word carries its own row: the hardware needs no order, so sort (stably) here
        order = np.argsort(rows, kind="stable")
        indptr = np.zeros(o + 1, dtype=np.int64)
        np.add.at(indptr, rows + 1, 1)
        job.dw = CsrDelta(np.cumsum(indptr).astype(np.int32), cols[order], vals[order])
    return job


def trailer_beat(status: CoreStatus, tag: int, nnz_act: int = 0, beat_words: int = 1) -> np.ndarray:
    """The trailer word followed by its beat's zero padding (a refused packet's whole answer)."""
    trailer = [0]
    _TRL["nnz_act"].put(trailer, nnz_act)
    _TRL["tag"].put(trailer, tag)
    _TRL["status"].put(trailer, int(status))
    return _to_beats(np.array(trailer, np.uint64), SectionShape(Section.TRAILER, 1, 1), beat_words)


def pack_result(result: JobResult, job: SiteJob, beat_words: int = 1) -> np.ndarray:
    """A JobResult -> the core's output packet (what the hardware must emit, bit for bit)."""
    ok = result.status == CoreStatus.OK
    shapes = output_shapes(job.flags, job.tokens, job.in_dim, job.out_dim, ok)
    parts = {Section.TRAILER: trailer_beat(result.status, result.tag, result.nnz_act)}
    if ok:
        parts[Section.Y] = _pack_rows(result.y, INT8_PER_WORD, "i1")
    if Section.XREF_OUT in {s.section for s in shapes}:
        parts[Section.XREF_OUT] = _pack_rows(result.x_ref, INT8_PER_WORD, "i1")
        parts[Section.YREF_OUT] = _pack_rows(result.y_ref, INT32_PER_WORD, "<i4")
    return _join(parts, shapes, beat_words)


def trailer_word(words: np.ndarray, beat_words: int = 1) -> int:
    """An output packet's trailer: the first word of its last beat."""
    words = np.asarray(words, dtype=np.uint64)
    if words.size < beat_words or words.size % beat_words:
        raise ValueError(f"output packet of {words.size} words is not whole beats of {beat_words}")
    return int(words[-int(beat_words)])


def trailer_status(words: np.ndarray, beat_words: int = 1) -> CoreStatus:
    """Status field of an output packet's trailer (the first word of its last beat)."""
    return CoreStatus(_TRL["status"].get([trailer_word(words, beat_words)]))


def with_header_field(words: np.ndarray, name: str, value: int) -> np.ndarray:
    """A copy of a packet with one header field replaced (to build malformed packets)."""
    out = np.array(words, dtype=np.uint64)
    f = _HDR[name]
    head = [int(w) for w in out[:HEADER_WORDS]]
    head[f.word] &= ~(((1 << f.width) - 1) << f.lsb)
    f.put(head, value)
    out[:HEADER_WORDS] = np.array(head, dtype=np.uint64)
    return out


def unpack_result(words: np.ndarray, job: SiteJob, beat_words: int = 1) -> JobResult:
    """Parse an output packet produced for ``job`` (raises if its length is wrong)."""
    words = np.asarray(words, dtype=np.uint64)
    trailer = [trailer_word(words, beat_words)]
    status = CoreStatus(_TRL["status"].get(trailer))
    result = JobResult(
        status=status, tag=_TRL["tag"].get(trailer), nnz_act=_TRL["nnz_act"].get(trailer)
    )
    p, i, o = job.tokens, job.in_dim, job.out_dim
    shapes = output_shapes(job.flags, p, i, o, status == 0)
    chunks = _split(words, shapes, beat_words, "output packet")
    if Section.Y in chunks:
        result.y = _unpack_rows(chunks[Section.Y], p, o, INT8_PER_WORD, "i1")
    if Section.XREF_OUT in chunks:
        result.x_ref = _unpack_rows(chunks[Section.XREF_OUT], p, i, INT8_PER_WORD, "i1")
        result.y_ref = _unpack_rows(chunks[Section.YREF_OUT], p, o, INT32_PER_WORD, "<i4")
    return result


def job_header(job: SiteJob) -> dict[str, int]:
    return {
        "mode": int(job.mode),
        "flags": int(job.flags),
        "th": int(job.th),
        "tokens": job.tokens,
        "in_dim": job.in_dim,
        "out_dim": job.out_dim,
        "nnz_dw": job.nnz_dw,
        "tag": int(job.tag),
    }
