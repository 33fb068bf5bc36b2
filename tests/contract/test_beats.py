"""Wide stream beats (issue 18): packets of B words per beat, checked against formulas and
hand-built packets written here, not against the packers' own helpers."""

from copy import deepcopy
from dataclasses import replace
from itertools import product

import numpy as np
import pytest
from deltamtl.contract.cycle_model import cycle_breakdown, packet_breakdown
from deltamtl.contract.ddr_image import ddr_cases_from_records
from deltamtl.contract.encoding import (
    join_sections,
    pack_job,
    packet_sections,
    trailer_status,
    unpack_job,
    unpack_result,
    with_header_field,
)
from deltamtl.contract.formats import VALID_FLAGS, JobFlag, Mode, choose_requant
from deltamtl.contract.golden_core import GoldenCore, execute_job
from deltamtl.contract.jobs import CoreState, CsrDelta, JobResult, SiteJob
from deltamtl.contract.limits import (
    BOARD_BEAT_WORDS,
    BOARD_LIMITS,
    BOARD_WIDE_LIMITS,
    CI_LIMITS,
    TINY_LIMITS,
    CoreLimits,
)
from deltamtl.contract.packets import (
    CoreStatus,
    Section,
    input_sections,
    output_sections,
    packet_beats,
)
from deltamtl.contract.vectors import generate_random_vectors, read_vectors, write_vectors

from tests.helpers import seeding

BEATS = (1, 2, 4, 8)


def _limits(b: int) -> CoreLimits:
    # lanes >= 8B and token_rows >= B for every B tested
    return CoreLimits(max_tokens=24, max_in=64, max_out=64, max_nnz_dw=64 * 64, lanes=64,
                      token_rows=8, beat_words=b)


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------------------------
# An independent tiny re-implementation of today's (B = 1) packet: bit positions typed in
# from the field table of docs/hls.md, rows packed with int.from_bytes.
# ---------------------------------------------------------------------------------------
def _row_words(values, bytes_per_elem: int) -> list[int]:
    raw = b"".join(int(v).to_bytes(bytes_per_elem, "little", signed=True) for v in values)
    raw += bytes(-len(raw) % 8)
    return [int.from_bytes(raw[k:k + 8], "little") for k in range(0, len(raw), 8)]


def _rows(a, bytes_per_elem: int) -> list[int]:
    return [w for row in np.asarray(a) for w in _row_words(row, bytes_per_elem)]


def _header(job: SiteJob) -> list[int]:
    return [int(job.mode) | int(job.flags) << 2 | job.th << 8 | job.tokens << 16
            | job.in_dim << 32 | job.out_dim << 48, job.nnz_dw | job.tag << 32]


def _legacy_packet(job: SiteJob) -> list[int]:
    out = _header(job)
    if job.flags & JobFlag.LOAD_W:
        out += _rows(job.w, 1)
    if job.nnz_dw:
        rows = job.dw.rows()
        out += [int(c) | int(r) << 16 | (int(v) & 0xFF) << 32
                for r, c, v in zip(rows, job.dw.indices, job.dw.values, strict=True)]
    if job.mode in (Mode.DENSE, Mode.TASK):
        out += _row_words(job.bias, 4)
    out += _row_words([int(m) | int(s) << 16 for m, s in zip(job.req_mult, job.req_shift,
                                                              strict=True)], 4)
    if job.mode != Mode.DENSE and job.flags & JobFlag.LOAD_REF:
        out += _rows(job.x_ref, 1) + _rows(job.y_ref, 4)
    return out + _rows(job.x, 1)


def _legacy_result(res: JobResult, job: SiteJob) -> list[int]:
    trailer = [res.nnz_act | res.tag << 32 | int(res.status) << 48]
    if res.status:
        return trailer
    out = _rows(res.y, 1)
    if job.flags & JobFlag.EMIT_REF:
        out += _rows(res.x_ref, 1) + _rows(res.y_ref, 4)
    return out + trailer


# ---------------------------------------------------------------------------------------
# Random jobs
# ---------------------------------------------------------------------------------------
def _job(rng, mode: Mode, flags: JobFlag, p: int, i: int, o: int, dw_density: float,
         tag: int = 0) -> SiteJob:
    w = rng.integers(-128, 128, (o, i)).astype(np.int8)
    dense = np.where(rng.random((o, i)) < dw_density, rng.integers(-9, 10, (o, i)), 0)
    dense = (np.clip(w.astype(int) + dense, -128, 127) - w).astype(np.int8)
    mult, shift = choose_requant(rng.uniform(0.2, 2.0, o) * 127 / (128 * 128 * np.sqrt(i)))
    refs = mode != Mode.DENSE and flags & JobFlag.LOAD_REF
    return SiteJob(
        mode, flags, int(rng.integers(1, 5)), rng.integers(-128, 128, (p, i)).astype(np.int8),
        mult, shift, o, w=w if flags & JobFlag.LOAD_W else None,
        dw=CsrDelta.from_dense(dense) if dense.any() else None,
        bias=rng.integers(-5000, 5000, o).astype(np.int32) if mode != Mode.TEMPORAL else None,
        x_ref=rng.integers(-128, 128, (p, i)).astype(np.int8) if refs else None,
        y_ref=rng.integers(-(1 << 20), 1 << 20, (p, o)).astype(np.int32) if refs else None,
        tag=tag)


def _dims(rng) -> tuple[int, int, int]:
    return int(rng.integers(1, 20)), int(rng.integers(1, 40)), int(rng.integers(1, 40))


def _resident(core: GoldenCore, rng, p: int, i: int, o: int) -> None:
    """A DENSE keyframe leaving weights and references of these dims resident."""
    key = _job(rng, Mode.DENSE, JobFlag.LOAD_W, p, i, o, 0.0)
    out = core.run_packet(pack_job(key, core.limits.beat_words))
    assert trailer_status(out, core.limits.beat_words) == CoreStatus.OK


def _all_kinds():
    return list(product(Mode, [JobFlag(f) for f in range(VALID_FLAGS + 1)], (0.0, 0.15)))


# ---------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------
def test_beat_words_validation() -> None:
    for b in BEATS:
        assert _limits(b).beat_words == b
    assert CoreLimits(4, 8, 8, 4, lanes=1).beat_words == 1  # B = 1 needs no lanes
    base = _limits(1)
    for bad, match in ((3, "power of two"), (16, "power of two <= 8"), (0, r"\[1, 2\^24\]")):
        with pytest.raises(ValueError, match=match):
            replace(base, beat_words=bad)
    with pytest.raises(ValueError, match="token_rows=2"):
        replace(base, token_rows=2, beat_words=4)
    with pytest.raises(ValueError, match="lanes >= 8 \\* beat_words = 32"):
        replace(base, lanes=16, beat_words=4)
    # the CI, tiny and board builds keep one word per beat (fetch/commit are 64-bit); the
    # wide board build carries the projection's width
    assert TINY_LIMITS.beat_words == CI_LIMITS.beat_words == BOARD_LIMITS.beat_words == 1
    assert BOARD_WIDE_LIMITS.beat_words == BOARD_BEAT_WORDS == 8
    assert replace(BOARD_WIDE_LIMITS, beat_words=1) == BOARD_LIMITS


# ---------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------
def _expected_sizes(mode, flags, p, i, o, nnz, b) -> tuple[dict, dict]:
    """Words per section, padding included, from the layout rules."""
    row_i8, row_i32, row_y = _ceil(i, 8), _ceil(o, 2), _ceil(o, 8)
    blocks = _ceil(p, b) * b  # token rows padded to whole blocks
    ins = {Section.HEADER: _ceil(2, b) * b}
    if flags & JobFlag.LOAD_W:
        ins[Section.W] = _ceil(o, b) * b * row_i8
    if nnz:
        ins[Section.DW] = _ceil(nnz, b) * b
    if mode != Mode.TEMPORAL:
        ins[Section.BIAS] = _ceil(row_i32, b) * b
    ins[Section.REQ] = _ceil(row_i32, b) * b
    if mode != Mode.DENSE and flags & JobFlag.LOAD_REF:
        ins[Section.XREF] = blocks * row_i8
        ins[Section.YREF] = p * _ceil(row_i32, b) * b
    ins[Section.X] = blocks * row_i8
    outs = {Section.Y: p * _ceil(row_y, b) * b}
    if flags & JobFlag.EMIT_REF:
        outs[Section.XREF_OUT] = blocks * row_i8
        outs[Section.YREF_OUT] = p * _ceil(row_i32, b) * b
    outs[Section.TRAILER] = b
    return ins, outs


def test_section_sizes_match_the_layout_rules() -> None:
    rng = seeding.rng("beats sizes")
    for b in BEATS:
        for mode, flags, _d in _all_kinds():
            p, i, o = _dims(rng)
            nnz = int(rng.integers(0, 50))
            ins, outs = _expected_sizes(mode, flags, p, i, o, nnz, b)
            got_in = input_sections(mode, flags, p, i, o, nnz, b)
            got_out = output_sections(flags, p, i, o, True, b)
            assert dict(got_in) == ins and dict(got_out) == outs, (b, mode, flags, p, i, o, nnz)
            assert [s for s, _n in got_in] == sorted(ins) and [s for s, _n in got_out] == sorted(outs)
            assert packet_beats(got_in, b) * b == sum(ins.values())
            assert packet_beats(got_out, b) * b == sum(outs.values())
            assert output_sections(flags, p, i, o, False, b) == [(Section.TRAILER, b)]
    with pytest.raises(ValueError, match="whole beats"):
        packet_beats([(Section.HEADER, 2), (Section.DW, 1)], 2)


# ---------------------------------------------------------------------------------------
# The layout on hand-built packets
# ---------------------------------------------------------------------------------------
def test_transposition_on_a_hand_built_dense_packet() -> None:
    """B = 2, DENSE LOAD_W | EMIT_REF: P = 3 tokens, I = 16 (2 words a row), O = 3."""
    w = np.arange(48, dtype=np.int8).reshape(3, 16)
    x = (-np.arange(48) - 1).astype(np.int8).reshape(3, 16)
    dw = np.zeros((3, 16), np.int8)
    dw[2, 5] = -3
    mult, shift = np.array([3, 4, 5], np.uint16), np.array([7, 8, 9], np.uint8)
    bias = np.array([10, -20, 30], np.int32)
    job = SiteJob(Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, 2, x, mult, shift, 3, w=w,
                  dw=CsrDelta.from_dense(dw), bias=bias, tag=77)
    W = [_row_words(r, 1) for r in w]  # W[row][word]
    X = [_row_words(r, 1) for r in x]
    nz = 5 | 2 << 16 | 0xFD << 32
    expected = [
        *_header(job),  # header beat
        W[0][0], W[1][0], W[0][1], W[1][1],  # rows 0-1: word 0, then word 1
        W[2][0], 0, W[2][1], 0,  # row 2 and a zero row
        nz, 0,  # one dW entry, padded
        10 | ((-20) & 0xFFFFFFFF) << 32, 30,  # bias: 3 int32 in 2 words, one beat
        3 | 7 << 16 | (4 | 8 << 16) << 32, 5 | 9 << 16,  # requantiser entries
        X[0][0], X[1][0], X[0][1], X[1][1],  # tokens 0-1
        X[2][0], 0, X[2][1], 0,  # token 2 and a zero row
    ]
    words = pack_job(job, 2)
    assert [int(v) for v in words] == expected
    res = execute_job(job, CoreState(), _limits(2))
    Y = [_row_words(r, 1)[0] for r in res.y]  # O = 3: one word a token
    XR = [_row_words(r, 1) for r in res.x_ref]
    YR = [_row_words(r, 4) for r in res.y_ref]  # two words a token
    trailer = res.nnz_act | 77 << 32
    expected_out = [
        Y[0], 0, Y[1], 0, Y[2], 0,  # each token's row padded to a beat
        XR[0][0], XR[1][0], XR[0][1], XR[1][1], XR[2][0], 0, XR[2][1], 0,
        YR[0][0], YR[0][1], YR[1][0], YR[1][1], YR[2][0], YR[2][1],
        trailer, 0,
    ]
    out = GoldenCore(_limits(2)).run_packet(words)
    assert [int(v) for v in out] == expected_out


def test_transposition_on_a_hand_built_temporal_packet() -> None:
    """B = 4, TEMPORAL LOAD_W | LOAD_REF: P = 5 tokens, I = 9 (2 words), O = 5 (3 words of
    y_ref, one of Y)."""
    rng = seeding.rng("beats hand temporal")
    job = _job(rng, Mode.TEMPORAL, JobFlag.LOAD_W | JobFlag.LOAD_REF, 5, 9, 5, 0.0, tag=5)
    W = [_row_words(r, 1) for r in job.w]
    XR = [_row_words(r, 1) for r in job.x_ref]
    YR = [_row_words(r, 4) for r in job.y_ref]
    X = [_row_words(r, 1) for r in job.x]
    req = _row_words([int(m) | int(s) << 16 for m, s in zip(job.req_mult, job.req_shift,
                                                             strict=True)], 4)

    def blocks(R):  # rows in blocks of 4: word j of rows 4k..4k+3, zero rows past the end
        return [R[r][j] if r < len(R) else 0 for k in (0, 4) for j in (0, 1)
                for r in range(k, k + 4)]

    expected = [*_header(job), 0, 0]
    expected += blocks(W)  # O = 5 rows: blocks of rows 0-3 and 4-7
    expected += [*req, 0]  # 3 words, one beat
    expected += blocks(XR)
    expected += [w for row in YR for w in (*row, 0)]  # 3 words a token, padded to 4
    expected += blocks(X)
    assert [int(v) for v in pack_job(job, 4)] == expected
    # the temporal job's output: Y rows of 1 word padded to a beat, then the trailer beat
    core = GoldenCore(_limits(4))
    out = core.run_packet(pack_job(job, 4))
    res = execute_job(job, CoreState(), _limits(4))
    assert [int(v) for v in out] == [w for r in res.y for w in (_row_words(r, 1)[0], 0, 0, 0)] + [
        res.nnz_act | 5 << 32, 0, 0, 0]


# ---------------------------------------------------------------------------------------
# B = 1 is today's packet, word for word
# ---------------------------------------------------------------------------------------
def test_one_word_beats_are_the_unpadded_packet() -> None:
    rng = seeding.rng("beats legacy")
    limits = _limits(1)
    for mode, flags, density in _all_kinds():
        p, i, o = _dims(rng)
        job = _job(rng, mode, flags, p, i, o, density, tag=int(rng.integers(0, 1 << 16)))
        words = [int(v) for v in pack_job(job)]
        assert words == _legacy_packet(job), (mode, flags)
        assert words == [int(v) for v in pack_job(job, 1)]
        core = GoldenCore(limits)
        _resident(core, rng, p, i, o)
        state = deepcopy(core.state)
        out = [int(v) for v in core.run_packet(np.array(words, np.uint64))]
        assert out == _legacy_result(execute_job(job, state, limits), job), (mode, flags)


# ---------------------------------------------------------------------------------------
# Round trips and the golden core for every B
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", BEATS)
def test_pack_run_unpack_equals_execute_job(b: int) -> None:
    rng = seeding.rng("beats roundtrip", b)
    limits = _limits(b)
    for mode, flags, density in _all_kinds():
        p, i, o = _dims(rng)
        job = _job(rng, mode, flags, p, i, o, density, tag=int(rng.integers(0, 1 << 16)))
        words = pack_job(job, b)
        assert words.size % b == 0
        assert np.array_equal(pack_job(unpack_job(words, b), b), words)
        core = GoldenCore(limits)
        _resident(core, rng, p, i, o)
        state = deepcopy(core.state)
        out = core.run_packet(words)
        expect = execute_job(job, state, limits)
        assert expect.status == CoreStatus.OK
        assert out.size == sum(n for _s, n in output_sections(flags, p, i, o, True, b))
        got = unpack_result(out, job, b)
        assert (got.status, got.tag, got.nnz_act) == (expect.status, expect.tag, expect.nnz_act)
        np.testing.assert_array_equal(got.y, expect.y)
        if flags & JobFlag.EMIT_REF:
            np.testing.assert_array_equal(got.x_ref, expect.x_ref)
            np.testing.assert_array_equal(got.y_ref, expect.y_ref)
        for name in ("w", "x_ref", "y_ref"):  # the packet path leaves the same state
            np.testing.assert_array_equal(getattr(core.state, name), getattr(state, name))


def _padding_mask(sections: list[tuple[Section, int]], shapes: dict, b: int) -> np.ndarray:
    """True where a word of the packet is beat padding, from the layout rules alone:
    ``shapes`` gives (rows, words a row) of each section before padding."""
    mask = []
    for section, n in sections:
        rows, rw = shapes[section]
        if section in (Section.W, Section.XREF, Section.X, Section.XREF_OUT):
            # block k, beat j, word r holds row k*B + r: padding past the last row
            mask += [(k * b + r) >= rows for k in range(n // (rw * b)) for _j in range(rw)
                     for r in range(b)]
        else:
            padded = n // rows
            mask += [c >= rw for _r in range(rows) for c in range(padded)]
    return np.array(mask, bool)


@pytest.mark.parametrize("b", (2, 4, 8))
def test_non_zero_padding_is_ignored(b: int) -> None:
    rng = seeding.rng("beats padding", b)
    limits = _limits(b)
    for mode, flags, density in _all_kinds():
        p, i, o = _dims(rng)
        job = _job(rng, mode, flags, p, i, o, density)
        words = pack_job(job, b)
        i8, i32 = _ceil(i, 8), _ceil(o, 2)
        shapes = {Section.HEADER: (1, 2), Section.W: (o, i8), Section.DW: (1, job.nnz_dw),
                  Section.BIAS: (1, i32), Section.REQ: (1, i32), Section.XREF: (p, i8),
                  Section.YREF: (p, i32), Section.X: (p, i8)}
        pad = _padding_mask(input_sections(mode, flags, p, i, o, job.nnz_dw, b), shapes, b)
        assert pad.size == words.size and not words[pad].any()  # the packer writes zeros
        noisy = words.copy()
        # all-ones rows and columns: entries past O and I, were padding read as dW
        noisy[pad] = rng.integers(1, 1 << 63, int(pad.sum()), dtype=np.int64).astype(np.uint64) | (
            np.uint64(0xFFFFFFFF))
        assert np.array_equal(pack_job(unpack_job(noisy, b), b), words)
        clean_core, noisy_core = GoldenCore(limits), GoldenCore(limits)
        _resident(clean_core, rng, p, i, o)
        noisy_core.state = deepcopy(clean_core.state)
        assert np.array_equal(noisy_core.run_packet(noisy), clean_core.run_packet(words))


def _trailer_beat(status: CoreStatus, tag: int, b: int) -> list[int]:
    return [tag << 32 | int(status) << 48] + [0] * (b - 1)


def _same_state(a: CoreState, b: CoreState) -> bool:
    return all((getattr(a, n) is None and getattr(b, n) is None)
               or np.array_equal(getattr(a, n), getattr(b, n)) for n in ("w", "x_ref", "y_ref"))


@pytest.mark.parametrize("b", (2, 4))
def test_refusals_in_beats(b: int) -> None:
    rng = seeding.rng("beats refusals", b)
    limits = _limits(b)
    p, i, o = _dims(rng)
    core = GoldenCore(limits)

    def refused(packet, status, tag=99):
        before = deepcopy(core.state)
        out = core.run_packet(np.asarray(packet, np.uint64))
        assert [int(v) for v in out] == _trailer_beat(status, tag, b), status
        assert trailer_status(out, b) == status
        assert _same_state(core.state, before), status

    # TASK on resident state, on a fresh core: no weights, no base references
    refused(pack_job(_job(rng, Mode.TASK, JobFlag.NONE, p, i, o, 0.0, tag=99), b),
            CoreStatus.NO_STATE)
    _resident(core, rng, p, i, o)
    # a job that carries everything, W and references included: refusals must not keep them
    job = _job(rng, Mode.TASK, JobFlag.LOAD_W | JobFlag.LOAD_REF | JobFlag.EMIT_REF, p, i, o,
               0.2, tag=99)
    if job.dw is None:  # at least one dW entry, for the INDEX case
        one = np.zeros((o, i), np.int8)
        one[0, 0] = -1 if job.w[0, 0] > 0 else 1
        job.dw = CsrDelta.from_dense(one)
    words = pack_job(job, b)
    refused(words[:-b], CoreStatus.LENGTH)  # TLAST a beat early
    refused(np.concatenate([words, np.zeros(b, np.uint64)]), CoreStatus.LENGTH)  # a beat late
    refused(np.zeros(0, np.uint64), CoreStatus.LENGTH, tag=0)  # not even the header beat
    refused(with_header_field(words, "mode", 3), CoreStatus.BAD_HEADER)
    refused(with_header_field(words, "tokens", limits.max_tokens + 1), CoreStatus.DIMS)
    refused(with_header_field(words, "nnz_dw", limits.max_nnz_dw + 1), CoreStatus.NNZ)
    sections = packet_sections(words, b)
    sections[Section.DW][-1] |= np.uint64(0xFFFF)  # the last entry's column past I
    refused(join_sections(sections, b), CoreStatus.INDEX)
    with pytest.raises(ValueError, match="whole beats"):
        core.run_packet(words[:-1])
    # after every refusal the resident state still serves the job, as execute_job says
    expect = execute_job(job, deepcopy(core.state), limits)
    got = unpack_result(core.run_packet(words), job, b)
    assert got.status == CoreStatus.OK
    np.testing.assert_array_equal(got.y, expect.y)


# ---------------------------------------------------------------------------------------
# Cycle model: input and output phases count beats
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", BEATS)
def test_cycle_model_counts_beats(b: int) -> None:
    rng = seeding.rng("beats cycles", b)
    limits = _limits(b)
    for mode, flags, density in _all_kinds():
        p, i, o = _dims(rng)
        job = _job(rng, mode, flags, p, i, o, density)
        core = GoldenCore(limits)
        _resident(core, rng, p, i, o)
        ins, outs = _expected_sizes(mode, flags, p, i, o, job.nnz_dw, b)
        wide = cycle_breakdown(job, limits, state=core.state)
        narrow = cycle_breakdown(job, limits, state=core.state, beat_words=1)
        assert wide.input == sum(ins.values()) // b and wide.output == sum(outs.values()) // b
        # only the stream phases change with the beat width
        assert (wide.act, wide.patch, wide.wpass, wide.unpatch) == (
            narrow.act, narrow.patch, narrow.wpass, narrow.unpatch)
        assert wide.input <= narrow.input and wide.output <= narrow.output
        assert packet_breakdown(pack_job(job, b), core.state, limits) == wide
    # refusals: the input beats, setup only when the header passed
    words = pack_job(job, b)
    short = packet_breakdown(words[:-b], core.state, limits)
    assert (short.input, short.setup, short.output) == (words.size // b - 1, 1, 1)
    bad = packet_breakdown(with_header_field(words, "mode", 3), core.state, limits)
    assert (bad.input, bad.setup, bad.output) == (words.size // b, 0, 1)


# ---------------------------------------------------------------------------------------
# Callers: the vector generator, the DDR cases (B = 1 only); the packet executor in
# tests/host/test_packet_beats.py
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("b", (2, 4))
def test_generated_vectors_in_beats(tmp_path, b: int) -> None:
    limits = CoreLimits(max_tokens=16, max_in=48, max_out=48, max_nnz_dw=48 * 48, lanes=32,
                        max_weights=48 * 40, token_rows=4, beat_words=b)
    records = generate_random_vectors(limits, 6, seed=seeding.seed_for("beats vectors", b))
    path = tmp_path / "v.dmtv"
    write_vectors(path, records, limits)
    back_limits, back = read_vectors(path)
    assert back_limits == limits and len(back) == len(records)
    core, statuses = GoldenCore(limits), {}
    for rec in back:
        if rec.is_reset:
            core.reset()
            continue
        assert rec.words_in.size % b == 0 and rec.words_out.size % b == 0, rec.cls
        assert np.array_equal(core.run_packet(rec.words_in), rec.words_out), rec.cls
        statuses.setdefault(rec.cls, set()).add(trailer_status(rec.words_out, b))
    expected = {"refused_header": CoreStatus.BAD_HEADER, "refused_dims": CoreStatus.DIMS,
                "refused_nnz": CoreStatus.NNZ, "refused_index": CoreStatus.INDEX,
                "refused_no_state": CoreStatus.NO_STATE, "refused_length": CoreStatus.LENGTH}
    for cls, status in expected.items():
        assert statuses[cls] == {status}, cls
    for cls in ("dense", "temporal", "task", "sub_temporal_patch", "max_dims"):
        assert statuses[cls] == {CoreStatus.OK}, cls


def test_ddr_cases_stay_one_word_per_beat() -> None:
    with pytest.raises(ValueError, match="beat_words=1"):
        ddr_cases_from_records([], _limits(2), np.random.default_rng(0))
