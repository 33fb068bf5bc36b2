"""Analytical cycle model of the compute core (the shared schedule of the RTL and HLS cores).

Cycles of one job are counted from the first input beat to the trailer beat, both included,
with no input gaps and no output back-pressure. Phases, in order (L lanes, T token rows,
P tokens, I in, O out, G = ceil(O/L) output groups, NT = ceil(P/T) tiles of T tokens,
U_k the union list of tile k: the inputs with a kept delta in any of its tokens):

=========  ==========================================================  ===================
phase      what happens                                                 cycles
=========  ==========================================================  ===================
input      one beat per cycle (header, W, dW, bias, req, refs, X);     n_in beats
           X rows delta-encoded on the fly into the delta buffer and
           the per-tile union lists
setup      section sizes from the header (accepted headers only)       1
decide     refusal status, state flips                                  1
patch      DENSE/TEMPORAL with dW: W_b += dW, one non-zero per cycle   nnz_dw + 3
act        activation-sparse d W^T on the T x L array: a T-cycle       G * sum_k max(|U_k|, T)
           prologue (idle since the PE rows restart from zero); per      + 2T + 5
           (group, tile) one union entry per cycle (one W read per
           lane feeds T tokens), at least T cycles, while a shadow
           row array stores the previous tile (adding each token's
           initial value); a T-cycle epilogue stores the last tile
wpass      TASK with dW: weight-sparse x_k dW^T, one dW non-zero per   ceil(P/L) * nnz_dw + 5
           cycle per token group of L
unpatch    W_b -= dW                                                    nnz_dw + 3
output     requantise 8 channels per word, one beat per cycle:         n_out beats
           Y, [x_ref', y_ref'], trailer
latency    output pipeline (read, select, multiply, round) and FIFO    5
=========  ==========================================================  ===================

The "+3"/"+5" terms are the patch and MAC pipelines draining between phases. A refused job
skips every compute phase and sends the trailer beat alone (n_out = 1); a header refusal
also skips setup. A beat is B = CoreLimits.beat_words words, each section padded to whole
beats (docs/hls.md, "Packet layout"); both cores move one beat a cycle; the board build
(BOARD_LIMITS) keeps B = 1, the wide one is BOARD_WIDE_LIMITS.
``cycle_breakdown`` returns the phases; ``core_cycles`` their sum.
tests/rtl/test_rtl_cosim.py holds the model to the RTL simulation within 5% on every job class.

``engine="v1"`` (``legacy_act_cycles``) is the pre-issue-18 engine, kept for comparisons:
one broadcast (p, i, d) non-zero per cycle to L lanes, act = G * sum_p max(1, nnz_p) + 5
(a token without non-zeros still takes one cycle per group). No core implements it any more.
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

# "scaled": the T x L array of the cores; "v1": the pre-issue-18 engine (legacy_act_cycles)
ENGINES = ("scaled", "v1")

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


def union_per_tile(keep: np.ndarray, token_rows: int) -> np.ndarray:
    """|U_k| of every tile: the inputs kept in any of tokens kT .. kT+T-1 of a (P, I) keep
    matrix (the last tile may be partial)."""
    keep = np.asarray(keep, dtype=bool)
    tiles = _ceil(keep.shape[0], token_rows)
    padded = np.zeros((tiles * token_rows, keep.shape[1]), dtype=bool)
    padded[:keep.shape[0]] = keep
    return padded.reshape(tiles, token_rows, -1).any(axis=1).sum(axis=1)


def act_cycles(tokens: int, out_dim: int, lanes: int, token_rows: int, union) -> int:
    """The scaled engine's act phase: a T-cycle prologue (idle: the PE rows restart from
    zero), per (output group, tile) max(|U_k|, T) cycles (one per union entry; the shadow
    rows' T-cycle store of the previous tile, which adds each token's initial value,
    overlaps them), a T-cycle epilogue (store the last tile), the MAC pipeline's drain."""
    union = np.asarray(union, dtype=np.int64).reshape(-1)
    tiles = _ceil(tokens, token_rows)
    if union.size != tiles:
        raise ValueError(f"union has {union.size} entries, expected ceil(P/T) = {tiles}")
    return (_ceil(out_dim, lanes) * int(np.maximum(union, token_rows).sum()) + 2 * token_rows
            + MAC_DRAIN)


def legacy_act_cycles(out_dim: int, lanes: int, nnz_per_token) -> int:
    """The pre-issue-18 engine's act phase (one broadcast non-zero per cycle to L lanes):
    per output group, every token's non-zeros, at least one cycle per token."""
    nnz = np.asarray(nnz_per_token, dtype=np.int64).reshape(-1)
    return _ceil(out_dim, lanes) * int(np.maximum(nnz, 1).sum()) + MAC_DRAIN


def assumed_union(nnz_per_token, in_dim: int, token_rows: int) -> np.ndarray:
    """Union sizes when only per-token counts are known: a tile's union is the sum of its
    tokens' counts, at most I (the tokens' non-zeros at distinct inputs: the largest union
    the counts allow, exact for dense tokens and for tokens without non-zeros)."""
    nnz = np.asarray(nnz_per_token, dtype=np.int64).reshape(-1)
    tiles = _ceil(nnz.size, token_rows)
    padded = np.zeros(tiles * token_rows, dtype=np.int64)
    padded[:nnz.size] = nnz
    return np.minimum(padded.reshape(tiles, token_rows).sum(axis=1), int(in_dim))


def compute_breakdown(mode: Mode, flags: JobFlag, tokens: int, in_dim: int, out_dim: int,
                      nnz_dw: int, lanes: int, nnz_per_token, token_rows: int = 1,
                      union=None, engine: str = "scaled", beat_words: int = 1) -> CycleBreakdown:
    """Cycles of an accepted job from its header fields and its activation non-zeros:
    ``union`` (|U_k| per tile) for the scaled engine, else assumed from ``nnz_per_token``
    (assumed_union); ``nnz_per_token`` for engine "v1". Input and output move one beat of
    ``beat_words`` words per cycle."""
    mode, flags = Mode(int(mode)), JobFlag(int(flags))
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {ENGINES}")
    nnz_per_token = np.asarray(nnz_per_token, dtype=np.int64).reshape(-1)
    if nnz_per_token.size != tokens:
        raise ValueError(f"nnz_per_token has {nnz_per_token.size} entries, tokens={tokens}")
    # input/output: one beat of beat_words words per cycle
    n_in = packet_beats(input_sections(mode, flags, tokens, in_dim, out_dim, nnz_dw, beat_words),
                        beat_words)
    n_out = packet_beats(output_sections(flags, tokens, in_dim, out_dim, True, beat_words),
                         beat_words)
    b = CycleBreakdown(input=n_in, setup=SETUP_CYCLES, output=n_out)
    if engine == "v1":
        b.act = legacy_act_cycles(out_dim, lanes, nnz_per_token)
    else:
        if union is None:
            union = assumed_union(nnz_per_token, in_dim, token_rows)
        b.act = act_cycles(tokens, out_dim, lanes, token_rows, union)
    if nnz_dw:
        if mode == Mode.TASK:
            b.wpass = _ceil(tokens, lanes) * nnz_dw + MAC_DRAIN
        else:
            b.patch = b.unpatch = nnz_dw + PATCH_DRAIN
    return b


def refused_breakdown(n_in_beats: int, header_ok: bool) -> CycleBreakdown:
    """A refused packet: drained to TLAST, answered with the trailer beat alone."""
    return CycleBreakdown(input=int(n_in_beats), setup=SETUP_CYCLES if header_ok else 0)


def _array_dims(lanes) -> tuple[int, int, int]:
    """(L, T, B) from a CoreLimits, or from a lane count alone (T = 1, B = 1)."""
    if isinstance(lanes, CoreLimits):
        return lanes.lanes, lanes.token_rows, lanes.beat_words
    return int(lanes), 1, 1


def job_keep(job, x_ref: np.ndarray | None) -> np.ndarray:
    """(P, I) kept activation non-zeros of a SiteJob (DENSE: non-zero inputs; else kept deltas)."""
    if Mode(int(job.mode)) == Mode.DENSE:
        return np.asarray(job.x) != 0
    if x_ref is None:
        raise ValueError("TEMPORAL/TASK job needs x_ref (in the job or the resident state)")
    return keep_delta(job.x, x_ref, job.th) != 0


def job_nnz_per_token(job, x_ref: np.ndarray | None) -> np.ndarray:
    """Activation non-zeros per token of a SiteJob (DENSE: non-zero inputs; else kept deltas)."""
    return np.count_nonzero(job_keep(job, x_ref), axis=1)


def cycle_breakdown(job, lanes, state=None, nnz_per_token=None, engine: str = "scaled",
                    beat_words: int | None = None) -> CycleBreakdown:
    """Cycles of an accepted SiteJob (deltamtl.contract.jobs) or of a header dict.

    ``lanes``: a CoreLimits (L, T and B of the build) or a lane count (then T = 1, B = 1);
    ``beat_words`` overrides B.
    A header dict (mode, flags, tokens, in_dim, out_dim, nnz_dw) needs ``nnz_per_token``;
    or pass ``nnz_act`` in it to assume the count spread evenly over the tokens. Without the
    keep matrix, tile unions are assumed from the per-token counts (assumed_union).
    A SiteJob takes x_ref from the job (LOAD_REF) or from ``state`` (a CoreState) and gives
    exact unions.
    """
    n_lanes, token_rows, beats = _array_dims(lanes)
    if beat_words is not None:
        beats = int(beat_words)
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
                                 hdr["out_dim"], hdr.get("nnz_dw", 0), n_lanes, nnz_per_token,
                                 token_rows, engine=engine, beat_words=beats)
    union = None
    if nnz_per_token is None:
        x_ref = None
        if Mode(int(job.mode)) != Mode.DENSE:
            x_ref = job.x_ref if JobFlag(int(job.flags)) & JobFlag.LOAD_REF else (
                None if state is None else state.x_ref)
        keep = job_keep(job, x_ref)
        nnz_per_token = np.count_nonzero(keep, axis=1)
        union = union_per_tile(keep, token_rows)
    return compute_breakdown(job.mode, job.flags, job.tokens, job.in_dim, job.out_dim,
                             job.nnz_dw, n_lanes, nnz_per_token, token_rows, union, engine,
                             beats)


def core_cycles(job, lanes, state=None, nnz_per_token=None, engine: str = "scaled",
                beat_words: int | None = None) -> int:
    """Total cycles, first input beat to trailer, of an accepted job (see cycle_breakdown)."""
    return cycle_breakdown(job, lanes, state, nnz_per_token, engine, beat_words).total


def packet_breakdown(words_in: np.ndarray, state, limits: CoreLimits,
                     engine: str = "scaled") -> CycleBreakdown:
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
    return cycle_breakdown(unpack_job(words_in, b), limits, state=state, engine=engine)
