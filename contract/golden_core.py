"""The bit-exact reference of the compute core: one site job on numpy integers.

``execute_job`` runs a job in any mode against a :class:`~deltamtl.contract.jobs.CoreState`
(the reuse buffer and weight bank that persist between jobs); ``GoldenCore`` runs stream
packets end to end, refusing malformed ones with a trailer as the hardware does. The
whole-video runner (:mod:`deltamtl.host.runner`) calls it through its site-executor
interface; the C++ kernels and the RTL core are held to it bit for bit.
"""

from __future__ import annotations

import numpy as np
from deltamtl.contract.encoding import (
    _NZ,
    job_header,
    pack_result,
    parse_header,
    trailer_beat,
    unpack_job,
)
from deltamtl.contract.formats import (
    TH_MAX,
    TH_MIN,
    VALID_FLAGS,
    JobFlag,
    Mode,
    keep_delta,
    requantize,
    wrap_int32,
)
from deltamtl.contract.jobs import CoreState, JobResult, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import (
    HEADER_SHAPE,
    CoreStatus,
    Section,
    input_sections,
    section_offsets,
)


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


def _int_matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a @ w.T`` of integer matrices, exactly, through float64 BLAS (numpy's int64
    product has no BLAS and was most of a streamed frame's time, docs/streaming.md).

    Exact because the operands are small: |a| <= 255 (int8 inputs, int9 deltas) and
    |w| <= 256 (int8 weights, deltas, merged weights), so a product is below 2^16 and a
    sum of up to MAX_DIM < 2^16 of them below 2^32, far inside the 2^53 within which every
    integer is a float64: each partial sum is exact whatever order BLAS adds in.
    """
    if a.size and w.size and (int(np.abs(a).max()) > 255 or int(np.abs(w).max()) > 256):
        return np.asarray(a, np.int64) @ np.asarray(w, np.int64).T  # outside the bound: exact, slow
    out = np.asarray(a, np.float64) @ np.asarray(w, np.float64).T
    return out.astype(np.int64)


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
        acc = wrap_int32(_int_matmul(x, w_eff) + np.asarray(job.bias, dtype=np.int64)[None, :])
        new_x_ref, new_y_ref = job.x.astype(np.int8), acc
        nnz_act = int(np.count_nonzero(job.x))
    elif mode == Mode.TEMPORAL:
        d = keep_delta(job.x, x_ref, job.th).astype(np.int64)
        new_x_ref = (np.asarray(x_ref, np.int64) + d).astype(np.int8)
        acc = wrap_int32(np.asarray(y_ref, np.int64) + _int_matmul(d, w_eff))
        new_y_ref = acc
        nnz_act = int(np.count_nonzero(d))
    else:  # TASK: reads the base state, never writes it
        d = keep_delta(job.x, x_ref, job.th).astype(np.int64)
        x_k = np.asarray(x_ref, np.int64) + d
        acc64 = np.asarray(y_ref, np.int64) + _int_matmul(d, w_b) + np.asarray(job.bias, np.int64)[None, :]
        if dw is not None:
            acc64 = acc64 + _int_matmul(x_k, dw)
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


class GoldenCore:
    """Packet-level golden core: feeds input packets, returns output packets, keeps state."""

    def __init__(self, limits: CoreLimits) -> None:
        self.limits = limits
        self.state = CoreState()

    def reset(self) -> None:
        self.state = CoreState()

    def run_packet(self, words: np.ndarray) -> np.ndarray:
        """One input packet (header through TLAST) -> its output packet, both as words in
        beats of ``limits.beat_words`` (docs/hls.md, "Packet layout"; padding is ignored).

        A refused packet (bad header, dims, nnz, length, index, missing state) is drained
        and answered with the trailer beat alone; state is left as it was.
        """
        b = self.limits.beat_words
        words = np.asarray(words, dtype=np.uint64)
        if words.size % b:
            raise ValueError(f"run_packet: {words.size} words are not whole beats of {b}")
        # the header is whole after its own beat(s); a shorter packet has no tag to answer
        hdr = parse_header(words) if words.size >= HEADER_SHAPE.words(b) else None
        status = CoreStatus.LENGTH if hdr is None else check_header(hdr, self.limits)
        if not status:
            layout = input_sections(
                Mode(hdr["mode"]), JobFlag(hdr["flags"]), hdr["tokens"], hdr["in_dim"],
                hdr["out_dim"], hdr["nnz_dw"], b,
            )
            if sum(n for _s, n in layout) != words.size:  # whole beats: the beat count
                status = CoreStatus.LENGTH
        if not status and hdr["nnz_dw"]:
            start, _n = section_offsets(layout)[Section.DW]
            nz = words[start: start + hdr["nnz_dw"]]  # the padding after them is no entry
            rows = (nz >> np.uint64(_NZ["row"].lsb)) & np.uint64(_NZ["row"].mask)
            cols = (nz >> np.uint64(_NZ["col"].lsb)) & np.uint64(_NZ["col"].mask)
            if np.any(rows >= hdr["out_dim"]) or np.any(cols >= hdr["in_dim"]):
                status = CoreStatus.INDEX
        if status:
            return trailer_beat(status, hdr["tag"] if hdr is not None else 0, 0, b)
        job = unpack_job(words, b)
        return pack_result(execute_job(job, self.state, self.limits), job, b)

    def run_job(self, job: SiteJob) -> JobResult:
        return execute_job(job, self.state, self.limits)
