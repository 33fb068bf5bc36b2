"""Golden model of the compute core: one site job on numpy integers, and its stream packets.

This is the executable reading of ``deltamtl.contract``: ``execute_job`` runs a site job in
any mode against a ``CoreState`` (the reuse buffer and weight bank that persist between
jobs), ``pack_job``/``unpack_result`` translate to and from the 64-bit AXI4-Stream words the
HLS core, the RTL core and the board consume, and ``GoldenCore`` runs packets end to end.
The whole-video runner (``deltamtl.model.golden``) calls ``execute_job`` through its
pluggable site-executor interface; the C++ and RTL executors are held to it bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from deltamtl.contract import (
    HEADER_FIELDS,
    HEADER_WORDS,
    INT8_PER_WORD,
    INT32_PER_WORD,
    NZ_FIELDS,
    REQ_FIELDS,
    REQ_MULT_MAX,
    REQ_SHIFT_MAX,
    REQ_SHIFT_MIN,
    TH_MAX,
    TH_MIN,
    TRAILER_FIELDS,
    VALID_FLAGS,
    CoreLimits,
    CoreStatus,
    JobFlag,
    Mode,
    Section,
    input_sections,
    keep_delta,
    output_sections,
    requantize,
    words_for,
    wrap_int32,
)

_HDR = {f.name: f for f in HEADER_FIELDS}
_NZ = {f.name: f for f in NZ_FIELDS}
_REQ = {f.name: f for f in REQ_FIELDS}
_TRL = {f.name: f for f in TRAILER_FIELDS}


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


def check_header(hdr: dict[str, int], limits: CoreLimits) -> CoreStatus:
    """Refusal rules on the header alone (the core applies them before reading further)."""
    if hdr["mode"] not in {int(m) for m in Mode} or hdr["flags"] & ~VALID_FLAGS:
        return CoreStatus.BAD_HEADER
    if not (TH_MIN <= hdr["th"] <= TH_MAX):
        return CoreStatus.BAD_HEADER
    p, i, o = hdr["tokens"], hdr["in_dim"], hdr["out_dim"]
    if not (1 <= p <= limits.max_tokens and 1 <= i <= limits.max_in and 1 <= o <= limits.max_out):
        return CoreStatus.DIMS
    if o * i > limits.max_weights:
        return CoreStatus.DIMS
    if hdr["nnz_dw"] > limits.max_nnz_dw:
        return CoreStatus.NNZ
    return CoreStatus.OK


def check_state(hdr: dict[str, int], state: CoreState) -> CoreStatus:
    """Resident weights/references must exist with the job's dimensions."""
    p, i, o = hdr["tokens"], hdr["in_dim"], hdr["out_dim"]
    flags, mode = JobFlag(hdr["flags"]), Mode(hdr["mode"])
    if not flags & JobFlag.LOAD_W and (state.w is None or state.w.shape != (o, i)):
        return CoreStatus.NO_STATE
    if mode in (Mode.TEMPORAL, Mode.TASK) and not flags & JobFlag.LOAD_REF:
        if state.x_ref is None or state.x_ref.shape != (p, i) or state.y_ref.shape != (p, o):
            return CoreStatus.NO_STATE
    return CoreStatus.OK


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


def check_job(job: SiteJob, state: CoreState, limits: CoreLimits) -> CoreStatus:
    """The core's refusal rules, in the order the HLS and RTL cores apply them."""
    hdr = job_header(job)
    status = check_header(hdr, limits)
    if status:
        return status
    if job.nnz_dw and (
        int(job.dw.indices.max()) >= job.in_dim or len(job.dw.indptr) != job.out_dim + 1
    ):
        return CoreStatus.INDEX
    return check_state(hdr, state)


def execute_job(job: SiteJob, state: CoreState, limits: CoreLimits) -> JobResult:
    """Run one job; updates ``state`` in place exactly as the hardware would."""
    status = check_job(job, state, limits)
    if status != CoreStatus.OK:
        return JobResult(status=status, tag=job.tag)
    mode, flags = Mode(int(job.mode)), JobFlag(int(job.flags))
    o = job.out_dim
    w_bank = job.w if flags & JobFlag.LOAD_W else state.w
    w_b = np.asarray(w_bank, dtype=np.int64)
    dw = job.dw.to_dense(o, job.in_dim).astype(np.int64) if job.nnz_dw else None
    x = np.asarray(job.x, dtype=np.int64)
    if mode in (Mode.TEMPORAL, Mode.TASK):
        x_ref = job.x_ref if flags & JobFlag.LOAD_REF else state.x_ref
        y_ref = job.y_ref if flags & JobFlag.LOAD_REF else state.y_ref
    # DENSE/TEMPORAL patch the int8 weight bank (W_b += dW), so the merged weight wraps
    # like the bank does; the export guarantees it never needs to.
    w_eff = w_b if dw is None else ((w_b + dw + 128) % 256) - 128

    if mode == Mode.DENSE:
        acc = wrap_int32(x @ w_eff.T + np.asarray(job.bias, dtype=np.int64)[None, :])
        new_x_ref, new_y_ref = job.x.astype(np.int8), acc
        nnz_act = int(np.count_nonzero(job.x))
    elif mode == Mode.TEMPORAL:
        d = keep_delta(job.x, x_ref, job.th).astype(np.int64)
        new_x_ref = (np.asarray(x_ref, np.int64) + d).astype(np.int8)
        acc = wrap_int32(np.asarray(y_ref, np.int64) + d @ w_eff.T)
        new_y_ref = acc
        nnz_act = int(np.count_nonzero(d))
    else:  # TASK: reads the base state, never writes it
        d = keep_delta(job.x, x_ref, job.th).astype(np.int64)
        x_k = np.asarray(x_ref, np.int64) + d
        acc64 = np.asarray(y_ref, np.int64) + d @ w_b.T + np.asarray(job.bias, np.int64)[None, :]
        if dw is not None:
            acc64 = acc64 + x_k @ dw.T
        acc = wrap_int32(acc64)
        new_x_ref, new_y_ref = x_k.astype(np.int8), acc
        nnz_act = int(np.count_nonzero(d))

    y = requantize(acc, job.req_mult, job.req_shift)
    if flags & JobFlag.LOAD_W:
        state.w = np.array(job.w, dtype=np.int8)
    if mode in (Mode.DENSE, Mode.TEMPORAL):
        state.x_ref, state.y_ref = new_x_ref.copy(), new_y_ref.copy()
    result = JobResult(status=CoreStatus.OK, tag=job.tag, nnz_act=nnz_act, y=y)
    if flags & JobFlag.EMIT_REF:
        result.x_ref, result.y_ref = new_x_ref, new_y_ref
    return result


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


def pack_job(job: SiteJob) -> np.ndarray:
    """A SiteJob -> the core's input packet (uint64 words; TLAST on the last one)."""
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
    order = input_sections(mode, flags, p, i, o, job.nnz_dw)
    out = []
    for section, n_words in order:
        chunk = parts[section]
        if chunk.size != n_words:
            raise AssertionError(f"{section.name}: packed {chunk.size} words, layout says {n_words}")
        out.append(chunk)
    return np.concatenate(out).astype(np.uint64)


def unpack_job(words: np.ndarray) -> SiteJob:
    """The inverse of pack_job (used by tests and to read test vectors)."""
    words = np.asarray(words, dtype=np.uint64)
    hdr = parse_header(words)
    mode, flags = Mode(hdr["mode"]), JobFlag(hdr["flags"])
    p, i, o, nnz = hdr["tokens"], hdr["in_dim"], hdr["out_dim"], hdr["nnz_dw"]
    pos, chunks = 0, {}
    for section, n_words in input_sections(mode, flags, p, i, o, nnz):
        chunks[section] = words[pos : pos + n_words]
        pos += n_words
    if pos != words.size:
        raise ValueError(f"packet has {words.size} words, its header implies {pos}")
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
        cols = ((nz >> np.uint64(_NZ["col"].lsb)) & np.uint64(0xFFFF)).astype(np.uint16)
        rows = ((nz >> np.uint64(_NZ["row"].lsb)) & np.uint64(0xFFFF)).astype(np.int64)
        vals = ((nz >> np.uint64(_NZ["value"].lsb)) & np.uint64(0xFF)).astype(np.uint8).view(np.int8)
        if np.any(rows >= o):
            raise ValueError(f"dW non-zero names row {int(rows.max())} >= out_dim {o}")
        # each word carries its own row: the hardware needs no order, so sort (stably) here
        order = np.argsort(rows, kind="stable")
        indptr = np.zeros(o + 1, dtype=np.int64)
        np.add.at(indptr, rows + 1, 1)
        job.dw = CsrDelta(np.cumsum(indptr).astype(np.int32), cols[order], vals[order])
    return job


def pack_result(result: JobResult, job: SiteJob) -> np.ndarray:
    """A JobResult -> the core's output packet (what the hardware must emit, bit for bit)."""
    trailer = [0]
    _TRL["nnz_act"].put(trailer, result.nnz_act)
    _TRL["tag"].put(trailer, result.tag)
    _TRL["status"].put(trailer, int(result.status))
    ok = result.status == CoreStatus.OK
    parts = []
    for section, _n in output_sections(job.flags, job.tokens, job.in_dim, job.out_dim, ok):
        if section == Section.Y:
            parts.append(_pack_rows(result.y, INT8_PER_WORD, "i1"))
        elif section == Section.XREF_OUT:
            parts.append(_pack_rows(result.x_ref, INT8_PER_WORD, "i1"))
        elif section == Section.YREF_OUT:
            parts.append(_pack_rows(result.y_ref, INT32_PER_WORD, "<i4"))
        else:
            parts.append(np.array(trailer, dtype=np.uint64))
    return np.concatenate(parts).astype(np.uint64)


def trailer_status(words: np.ndarray) -> CoreStatus:
    """Status field of an output packet's trailer (its last word)."""
    return CoreStatus(_TRL["status"].get([int(np.asarray(words, dtype=np.uint64)[-1])]))


def with_header_field(words: np.ndarray, name: str, value: int) -> np.ndarray:
    """A copy of a packet with one header field replaced (to build malformed packets)."""
    out = np.array(words, dtype=np.uint64)
    f = _HDR[name]
    head = [int(w) for w in out[:HEADER_WORDS]]
    head[f.word] &= ~(((1 << f.width) - 1) << f.lsb)
    f.put(head, value)
    out[:HEADER_WORDS] = np.array(head, dtype=np.uint64)
    return out


def unpack_result(words: np.ndarray, job: SiteJob) -> JobResult:
    """Parse an output packet produced for ``job`` (raises if its length is wrong)."""
    words = np.asarray(words, dtype=np.uint64)
    trailer = [int(words[-1])]
    status = CoreStatus(_TRL["status"].get(trailer))
    result = JobResult(
        status=status, tag=_TRL["tag"].get(trailer), nnz_act=_TRL["nnz_act"].get(trailer)
    )
    layout = output_sections(job.flags, job.tokens, job.in_dim, job.out_dim, status == 0)
    expected = sum(n for _s, n in layout)
    if words.size != expected:
        raise ValueError(f"output packet has {words.size} words, expected {expected}")
    pos = 0
    p, i, o = job.tokens, job.in_dim, job.out_dim
    for section, n in layout:
        chunk = words[pos : pos + n]
        pos += n
        if section == Section.Y:
            result.y = _unpack_rows(chunk, p, o, INT8_PER_WORD, "i1")
        elif section == Section.XREF_OUT:
            result.x_ref = _unpack_rows(chunk, p, i, INT8_PER_WORD, "i1")
        elif section == Section.YREF_OUT:
            result.y_ref = _unpack_rows(chunk, p, o, INT32_PER_WORD, "<i4")
    return result


class GoldenCore:
    """Packet-level golden core: feeds input packets, returns output packets, keeps state."""

    def __init__(self, limits: CoreLimits) -> None:
        self.limits = limits
        self.state = CoreState()

    def reset(self) -> None:
        self.state = CoreState()

    def run_packet(self, words: np.ndarray) -> np.ndarray:
        """One input packet (header through TLAST) -> its output packet.

        A refused packet (bad header, dims, nnz, length, index, missing state) is drained
        and answered with a trailer alone; state is left as it was.
        """
        words = np.asarray(words, dtype=np.uint64)
        hdr = parse_header(words) if words.size >= HEADER_WORDS else None
        status = CoreStatus.LENGTH if hdr is None else check_header(hdr, self.limits)
        if not status:
            layout = input_sections(
                Mode(hdr["mode"]), JobFlag(hdr["flags"]), hdr["tokens"], hdr["in_dim"],
                hdr["out_dim"], hdr["nnz_dw"],
            )
            if sum(n for _s, n in layout) != words.size:
                status = CoreStatus.LENGTH
        if not status and hdr["nnz_dw"]:
            w_words = hdr["out_dim"] * words_for(hdr["in_dim"], INT8_PER_WORD)
            start = HEADER_WORDS + (w_words if hdr["flags"] & JobFlag.LOAD_W else 0)
            nz = words[start:]
            nz = nz[: hdr["nnz_dw"]]
            rows = (nz >> np.uint64(_NZ["row"].lsb)) & np.uint64(0xFFFF)
            cols = (nz >> np.uint64(_NZ["col"].lsb)) & np.uint64(0xFFFF)
            if np.any(rows >= hdr["out_dim"]) or np.any(cols >= hdr["in_dim"]):
                status = CoreStatus.INDEX
        if status:
            trailer = [0]
            _TRL["tag"].put(trailer, hdr["tag"] if hdr is not None else 0)
            _TRL["status"].put(trailer, int(status))
            return np.array(trailer, dtype=np.uint64)
        job = unpack_job(words)
        return pack_result(execute_job(job, self.state, self.limits), job)

    def run_job(self, job: SiteJob) -> JobResult:
        return execute_job(job, self.state, self.limits)


def with_flags(job: SiteJob, flags: JobFlag) -> SiteJob:
    return replace(job, flags=JobFlag(flags))
