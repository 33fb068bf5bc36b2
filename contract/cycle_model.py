"""Analytical cycle model of the compute core (the shared schedule of the RTL and HLS cores).

Cycles of one job are counted from the first input beat to the trailer beat, both included,
with no input gaps and no output back-pressure. Phases, in order (L lanes, P tokens, I in,
O out, G = ceil(O/L) output groups, T = ceil(P/L) token groups):

=========  ==========================================================  ===================
phase      what happens                                                 cycles
=========  ==========================================================  ===================
input      one beat per cycle (header, W, dW, bias, req, refs, X);     n_in beats
           X rows delta-encoded on the fly into the non-zero list
setup      section sizes from the header (accepted headers only)       1
decide     refusal status, state flips                                  1
patch      DENSE/TEMPORAL with dW: W_b += dW, one non-zero per cycle   nnz_dw + 3
act        activation-sparse d W^T, one (col, d) broadcast per cycle   G * sum_p max(1, nnz_p) + 5
           per output group; a token without non-zeros still takes
           one cycle per group (copies y_ref, adds the bias)
wpass      TASK with dW: weight-sparse x_k dW^T, one dW non-zero per   T * nnz_dw + 5
           cycle per token group
unpatch    W_b -= dW                                                    nnz_dw + 3
output     requantise 8 channels per word, one beat per cycle:         n_out beats
           Y, [x_ref', y_ref'], trailer
latency    output pipeline (read, select, multiply, round) and FIFO    5
=========  ==========================================================  ===================

The "+3"/"+5" terms are the patch and MAC pipelines draining between phases. A refused job
skips every compute phase and sends the trailer beat alone (n_out = 1); a header refusal
also skips setup. A beat is B = CoreLimits.beat_words words, each section padded to whole
beats (docs/hls.md, "Packet layout"); every core built so far has B = 1.
``cycle_breakdown`` returns the phases; ``core_cycles`` their sum.
tests/rtl/test_rtl_cosim.py holds the model to the RTL simulation within 5% on every job class.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import asdict, dataclass

import numpy as np
from deltamtl.contract.formats import JobFlag, Mode, keep_delta
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import (
    HEADER_SHAPE,
    CoreStatus,
    input_sections,
    output_sections,
    packet_beats,
)

SETUP_CYCLES = 1
DECIDE_CYCLES = 1
PATCH_DRAIN = 3  # patch pipeline: dW read, W read, modify-write
MAC_DRAIN = 5  # MAC pipeline: list/dW read, operand read, rotate, DSP, accumulate
OUTPUT_LATENCY = 5  # y/x read, select, requant multiply, round/clamp, FIFO


@dataclass
class CycleBreakdown:
    input: int = 0
    setup: int = 0
    decide: int = DECIDE_CYCLES
    patch: int = 0
    act: int = 0
    wpass: int = 0
    unpatch: int = 0
    output: int = 1
    latency: int = OUTPUT_LATENCY

    @property
    def total(self) -> int:
        return sum(asdict(self).values())

    @property
    def compute(self) -> int:
        """Cycles of the compute phases (what the broadcast rate is measured against)."""
        return self.patch + self.act + self.wpass + self.unpatch


def _ceil(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def compute_breakdown(mode: Mode, flags: JobFlag, tokens: int, in_dim: int, out_dim: int,
                      nnz_dw: int, lanes: int, nnz_per_token,
                      beat_words: int = 1) -> CycleBreakdown:
    """Cycles of an accepted job from its header fields and its per-token non-zeros."""
    mode, flags = Mode(int(mode)), JobFlag(int(flags))
    nnz_per_token = np.asarray(nnz_per_token, dtype=np.int64).reshape(-1)
    if nnz_per_token.size != tokens:
        raise ValueError(f"nnz_per_token has {nnz_per_token.size} entries, tokens={tokens}")
    # input/output: one beat of beat_words words per cycle
    n_in = packet_beats(input_sections(mode, flags, tokens, in_dim, out_dim, nnz_dw, beat_words),
                        beat_words)
    n_out = packet_beats(output_sections(flags, tokens, in_dim, out_dim, True, beat_words),
                         beat_words)
    b = CycleBreakdown(input=n_in, setup=SETUP_CYCLES, output=n_out)
    b.act = _ceil(out_dim, lanes) * int(np.maximum(nnz_per_token, 1).sum()) + MAC_DRAIN
    if nnz_dw:
        if mode == Mode.TASK:
            b.wpass = _ceil(tokens, lanes) * nnz_dw + MAC_DRAIN
        else:
            b.patch = b.unpatch = nnz_dw + PATCH_DRAIN
    return b


def refused_breakdown(n_in_beats: int, header_ok: bool) -> CycleBreakdown:
    """A refused packet: drained to TLAST, answered with the trailer beat alone."""
    return CycleBreakdown(input=int(n_in_beats), setup=SETUP_CYCLES if header_ok else 0)


def job_nnz_per_token(job, x_ref: np.ndarray | None) -> np.ndarray:
    """Activation non-zeros per token of a SiteJob (DENSE: non-zero inputs; else kept deltas)."""
    if Mode(int(job.mode)) == Mode.DENSE:
        return np.count_nonzero(job.x, axis=1)
    if x_ref is None:
        raise ValueError("TEMPORAL/TASK job needs x_ref (in the job or the resident state)")
    return np.count_nonzero(keep_delta(job.x, x_ref, job.th), axis=1)


def cycle_breakdown(job, lanes: int, state=None, nnz_per_token=None,
                    beat_words: int = 1) -> CycleBreakdown:
    """Cycles of an accepted SiteJob (deltamtl.contract.jobs) or of a header dict.

    A header dict (mode, flags, tokens, in_dim, out_dim, nnz_dw) needs ``nnz_per_token``;
    or pass ``nnz_act`` in it to assume every token holds at least one non-zero.
    A SiteJob takes x_ref from the job (LOAD_REF) or from ``state`` (a CoreState).
    """
    if isinstance(job, dict):
        hdr = job
        if nnz_per_token is None:
            if "nnz_act" not in hdr:
                raise ValueError("header dict needs nnz_per_token or an 'nnz_act' entry")
            # no per-token information: spread nnz_act, no token without non-zeros
            base, extra = divmod(int(hdr["nnz_act"]), int(hdr["tokens"]))
            nnz_per_token = np.full(int(hdr["tokens"]), base)
            nnz_per_token[:extra] += 1
        return compute_breakdown(hdr["mode"], hdr["flags"], hdr["tokens"], hdr["in_dim"],
                                 hdr["out_dim"], hdr.get("nnz_dw", 0), lanes, nnz_per_token,
                                 beat_words)
    if nnz_per_token is None:
        x_ref = None
        if Mode(int(job.mode)) != Mode.DENSE:
            x_ref = job.x_ref if JobFlag(int(job.flags)) & JobFlag.LOAD_REF else (
                None if state is None else state.x_ref)
        nnz_per_token = job_nnz_per_token(job, x_ref)
    return compute_breakdown(job.mode, job.flags, job.tokens, job.in_dim, job.out_dim,
                             job.nnz_dw, lanes, nnz_per_token, beat_words)


def core_cycles(job, lanes: int, state=None, nnz_per_token=None, beat_words: int = 1) -> int:
    """Total cycles, first input beat to trailer, of an accepted job (see cycle_breakdown)."""
    return cycle_breakdown(job, lanes, state, nnz_per_token, beat_words).total


def packet_breakdown(words_in: np.ndarray, state, limits: CoreLimits) -> CycleBreakdown:
    """Cycles of one input packet on a core holding ``state`` (refusals included).

    ``state`` is the golden CoreState before the packet; it is not modified.
    """
    from deltamtl.contract.encoding import parse_header, trailer_status, unpack_job
    from deltamtl.contract.golden_core import GoldenCore, check_header

    b = limits.beat_words
    words_in = np.asarray(words_in, dtype=np.uint64)
    beats, header_beats = words_in.size // b, HEADER_SHAPE.words(b) // b
    if words_in.size < HEADER_SHAPE.words(b):
        return refused_breakdown(beats, header_ok=False)
    header_ok = check_header(parse_header(words_in), limits) == CoreStatus.OK
    probe = GoldenCore(limits)
    probe.state = deepcopy(state)
    out = probe.run_packet(words_in)
    status = trailer_status(out, b)
    if status:
        # a header refusal is decided on the header's last beat; any other after the packet
        return refused_breakdown(beats, header_ok=header_ok and beats > header_beats)
    return cycle_breakdown(unpack_job(words_in, b), limits.lanes, state=state, beat_words=b)
