"""Golden core: the three modes' algebra, reference semantics, packets, refusals."""

from copy import deepcopy

import numpy as np
import pytest
from deltamtl.contract.encoding import pack_job, unpack_job, unpack_result
from deltamtl.contract.formats import (
    JobFlag,
    Mode,
    choose_requant,
    keep_delta,
    requantize,
    wrap_int32,
)
from deltamtl.contract.golden_core import GoldenCore, execute_job
from deltamtl.contract.jobs import CoreState, CsrDelta, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import (
    HEADER_FIELDS,
    HEADER_WORDS,
    INT8_PER_WORD,
    NZ_FIELDS,
    TRAILER_FIELDS,
    CoreStatus,
    Field,
    output_sections,
    words_for,
)

from tests.helpers import seeding

_HDR = {f.name: f for f in HEADER_FIELDS}
_NZ = {f.name: f for f in NZ_FIELDS}
_TRL = {f.name: f for f in TRAILER_FIELDS}

LIMITS = CoreLimits(max_tokens=32, max_in=64, max_out=64, max_nnz_dw=64 * 64, lanes=8)


def _site(rng, p=None, i=None, o=None):
    p = p or int(rng.integers(1, 17))
    i = i or int(rng.integers(1, 40))
    o = o or int(rng.integers(1, 40))
    w = rng.integers(-128, 128, (o, i)).astype(np.int8)
    dw = np.where(rng.random((o, i)) < 0.2, rng.integers(-9, 10, (o, i)), 0)
    dw = (np.clip(w.astype(int) + dw, -128, 127) - w).astype(np.int8)
    mult, shift = choose_requant(rng.uniform(0.2, 2.0, o) * 127 / (128 * 128 * np.sqrt(i)))
    bias = rng.integers(-5000, 5000, o).astype(np.int32)
    return p, i, o, w, dw, mult, shift, bias


def _x(rng, shape):
    return rng.integers(-128, 128, shape).astype(np.int8)


def _dense_ref(x, w, bias):
    return wrap_int32(x.astype(np.int64) @ w.astype(np.int64).T + bias)


def test_dense_matches_direct_product_and_sets_state() -> None:
    rng = seeding.rng("test_dense_matches_direct_product_and_sets_state")
    p, i, o, w, dw, mult, shift, bias = _site(rng)
    x = _x(rng, (p, i))
    state = CoreState()
    job = SiteJob(Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, 1, x, mult, shift, o, w=w,
                  dw=CsrDelta.from_dense(dw), bias=bias)
    res = execute_job(job, state, LIMITS)
    acc = _dense_ref(x, w.astype(np.int64) + dw, bias)
    assert res.status == CoreStatus.OK
    assert np.array_equal(res.y, requantize(acc, mult, shift))
    assert np.array_equal(res.y_ref, acc) and np.array_equal(state.y_ref, acc)
    assert np.array_equal(state.x_ref, x) and np.array_equal(state.w, w)  # bank keeps W_b
    assert res.nnz_act == np.count_nonzero(x)


def test_temporal_lossless_equals_dense_and_bounded_without_drift() -> None:
    rng = seeding.rng("test_temporal_lossless_equals_dense_and_bounded_without_drift")
    p, i, o, w, _dw, mult, shift, bias = _site(rng)
    x = _x(rng, (p, i))
    state = CoreState()
    execute_job(SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, x, mult, shift, o, w=w, bias=bias),
                state, LIMITS)
    th = int(rng.integers(2, 9))
    lossless = deepcopy(state)
    for _frame in range(200):  # a long video: a random walk of the input
        x = np.clip(x.astype(int) + rng.integers(-3, 4, x.shape), -128, 127).astype(np.int8)
        job = SiteJob(Mode.TEMPORAL, JobFlag.NONE, th, x, mult, shift, o)
        res = execute_job(job, state, LIMITS)
        # x_ref is the last value sent: error bounded by th, accumulator exact (no drift)
        assert np.abs(x.astype(int) - state.x_ref).max() < th
        assert np.array_equal(state.y_ref, _dense_ref(state.x_ref, w, bias))
        assert np.array_equal(res.y, requantize(state.y_ref, mult, shift))
        exact = execute_job(SiteJob(Mode.TEMPORAL, JobFlag.NONE, 1, x, mult, shift, o),
                            lossless, LIMITS)
        assert np.array_equal(exact.y, requantize(_dense_ref(x, w, bias), mult, shift))


def test_task_identity_and_base_state_untouched() -> None:
    rng = seeding.rng("test_task_identity_and_base_state_untouched")
    p, i, o, w, dw, mult, shift, bias = _site(rng)
    x_b = _x(rng, (p, i))
    state = CoreState()
    execute_job(SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, x_b, mult, shift, o, w=w, bias=bias),
                state, LIMITS)
    before = deepcopy(state)
    x_k = np.clip(x_b.astype(int) + rng.integers(-20, 21, x_b.shape), -128, 127).astype(np.int8)
    th = int(rng.integers(1, 12))
    db = rng.integers(-300, 300, o).astype(np.int32)
    res = execute_job(SiteJob(Mode.TASK, JobFlag.EMIT_REF, th, x_k, mult, shift, o,
                              dw=CsrDelta.from_dense(dw), bias=db), state, LIMITS)
    # (x_ref_b + d)(W_b + dW_k)^T + b_k, exactly
    xk_sent = x_b.astype(np.int64) + keep_delta(x_k, x_b, th)
    acc = _dense_ref(xk_sent, w.astype(np.int64) + dw, bias.astype(np.int64) + db)
    assert np.array_equal(res.y_ref, acc) and np.array_equal(res.x_ref, xk_sent)
    assert np.array_equal(res.y, requantize(acc, mult, shift))
    for name in ("w", "x_ref", "y_ref"):
        assert np.array_equal(getattr(state, name), getattr(before, name))


def test_sub_task_temporal_with_dw_patch_keeps_base_bank() -> None:
    rng = seeding.rng("test_sub_task_temporal_with_dw_patch_keeps_base_bank")
    p, i, o, w, dw, mult, shift, bias = _site(rng)
    x = _x(rng, (p, i))
    state = CoreState(w=w.copy())
    x_ref = _x(rng, (p, i))
    y_ref = _dense_ref(x_ref, w.astype(np.int64) + dw, bias)
    res = execute_job(SiteJob(Mode.TEMPORAL, JobFlag.LOAD_REF, 1, x, mult, shift, o,
                              dw=CsrDelta.from_dense(dw), x_ref=x_ref, y_ref=y_ref), state, LIMITS)
    assert np.array_equal(res.y, requantize(_dense_ref(x, w.astype(np.int64) + dw, bias),
                                            mult, shift))
    assert np.array_equal(state.w, w)


def test_packets_round_trip_and_golden_core_matches_execute() -> None:
    """run_packet against numbers computed here, not against execute_job (its own body):
    Y and Y_ref from x (W + dW)^T + b in int64, trailer fields read through the contract's
    field table, and the packet length from output_sections."""
    rng = seeding.rng("test_packets_round_trip_and_golden_core_matches_execute")
    for _ in range(20):
        p, i, o, w, dw, mult, shift, bias = _site(rng)
        x = _x(rng, (p, i))
        job = SiteJob(Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, 3, x, mult, shift, o, w=w,
                      dw=CsrDelta.from_dense(dw), bias=bias, tag=int(rng.integers(0, 65536)))
        back = unpack_job(pack_job(job))
        for name in ("x", "w", "bias", "req_mult", "req_shift"):
            assert np.array_equal(getattr(back, name), getattr(job, name)), name
        # an all-zero dW (possible for tiny random sites) travels as no DW section at all
        got_dw = back.dw.to_dense(o, i) if back.dw is not None else np.zeros((o, i), np.int32)
        assert np.array_equal(got_dw, dw)
        assert (back.dw is None) == (np.count_nonzero(dw) == 0)
        core = GoldenCore(LIMITS)
        out = core.run_packet(pack_job(job))
        assert out.size == sum(n for _s, n in output_sections(job.flags, p, i, o))
        trailer = [int(out[-1])]
        assert _TRL["status"].get(trailer) == CoreStatus.OK
        assert _TRL["tag"].get(trailer) == job.tag
        assert _TRL["nnz_act"].get(trailer) == np.count_nonzero(x)  # DENSE sends every x
        acc = _dense_ref(x, w.astype(np.int64) + dw, bias)  # _site keeps W + dW in int8
        res = unpack_result(out, job)
        assert np.array_equal(res.y_ref, acc) and np.array_equal(res.x_ref, x)
        assert np.array_equal(res.y, requantize(acc, mult, shift))
        # the packer agrees with the bytes: Y row 0, element j in byte j of its words
        y_bytes = out[: words_for(o, INT8_PER_WORD)].astype("<u8").tobytes()[:o]
        assert np.array_equal(np.frombuffer(y_bytes, np.int8), res.y[0])


def _set(name: str, value: int):
    """A mutation that overwrites one header field (by the contract's field table)."""
    return lambda words: _put(words, _HDR[name], value)


def _put(words: list[int], field: Field, value: int) -> None:
    words[field.word] &= ~(((1 << field.width) - 1) << field.lsb)
    field.put(words, value)


@pytest.mark.parametrize(
    "mutate, status",
    [
        (_set("mode", 3), CoreStatus.BAD_HEADER),  # no fourth mode
        (_set("th", 0), CoreStatus.BAD_HEADER),  # th below TH_MIN
        (_set("flags", 1 << (_HDR["flags"].width - 1)), CoreStatus.BAD_HEADER),  # unused flag
        (_set("tokens", LIMITS.max_tokens + 1), CoreStatus.DIMS),
        (_set("nnz_dw", 5000), CoreStatus.NNZ),  # above max_nnz_dw = 4096
    ],
    ids=["mode", "th", "flags", "tokens", "nnz"],
)
def test_refused_headers_answer_with_trailer_only(mutate, status) -> None:
    rng = seeding.rng("test_refused_headers_answer_with_trailer_only")
    p, i, o, w, _dw, mult, shift, bias = _site(rng)
    job = SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, _x(rng, (p, i)), mult, shift, o, w=w,
                  bias=bias, tag=77)
    words = [int(v) for v in pack_job(job)]
    mutate(words)
    core = GoldenCore(LIMITS)
    out = core.run_packet(np.array(words, dtype=np.uint64))
    assert out.size == 1
    res = unpack_result(out, job)
    assert res.status == status and res.tag == 77
    assert core.state.w is None  # nothing loaded


def test_refused_length_index_and_missing_state() -> None:
    rng = seeding.rng("test_refused_length_index_and_missing_state")
    p, i, o, w, dw, mult, shift, bias = _site(rng, i=12, o=9)
    job = SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, _x(rng, (p, i)), mult, shift, o, w=w,
                  dw=CsrDelta.from_dense(dw), bias=bias)
    core = GoldenCore(LIMITS)
    words = pack_job(job)
    for bad in (words[:-1], np.concatenate([words, words[-1:]])):
        assert unpack_result(core.run_packet(bad), job).status == CoreStatus.LENGTH
    if job.nnz_dw:
        bad = words.copy()
        at = HEADER_WORDS + o * words_for(i, INT8_PER_WORD)  # first DW word, after W
        nz = [int(bad[at])]
        _put(nz, _NZ["col"], (1 << _NZ["col"].width) - 1)  # the widest column index
        bad[at] = np.uint64(nz[0])
        assert unpack_result(core.run_packet(bad), job).status == CoreStatus.INDEX
    task = SiteJob(Mode.TASK, JobFlag.NONE, 1, job.x, mult, shift, o, bias=bias)
    assert unpack_result(core.run_packet(pack_job(task)), task).status == CoreStatus.NO_STATE
    assert core.state.w is None
    ok = unpack_result(core.run_packet(words), job)  # a clean job afterwards still works
    assert ok.status == CoreStatus.OK


def test_csr_from_dense_matches_scipy() -> None:
    import scipy.sparse as sp

    rng = seeding.rng("test_csr_from_dense_matches_scipy")
    dense = np.where(rng.random((23, 31)) < 0.3, rng.integers(-128, 128, (23, 31)), 0)
    csr = CsrDelta.from_dense(dense.astype(np.int8))
    ref = sp.csr_matrix((csr.values, csr.indices, csr.indptr), shape=dense.shape)
    assert np.array_equal(ref.toarray(), dense)
    assert csr.indptr.dtype == np.int32 and csr.indices.dtype == np.uint16


def test_dw_words_in_any_order_give_the_same_result() -> None:
    rng = seeding.rng("test_dw_words_in_any_order_give_the_same_result")
    p, i, o, w, dw, mult, shift, bias = _site(rng, i=20, o=20)
    dw[0, 0] = 5
    x = _x(rng, (p, i))
    core = GoldenCore(LIMITS)
    core.run_packet(pack_job(SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, x, mult, shift, o, w=w,
                                     bias=bias)))
    task = SiteJob(Mode.TASK, JobFlag.NONE, 1, x, mult, shift, o, dw=CsrDelta.from_dense(dw),
                   bias=bias)
    words = pack_job(task)
    nnz = task.nnz_dw
    shuffled = words.copy()
    shuffled[HEADER_WORDS:HEADER_WORDS + nnz] = rng.permutation(words[HEADER_WORDS:HEADER_WORDS + nnz])
    assert np.array_equal(unpack_job(shuffled).dw.to_dense(o, i), dw)
    assert np.array_equal(core.run_packet(shuffled), core.run_packet(words))


def test_merged_weight_wraps_like_the_int8_bank() -> None:
    w = np.full((1, 1), 120, np.int8)
    dw = np.full((1, 1), 20, np.int8)  # 140 wraps to -116 in the bank
    x = np.ones((1, 1), np.int8)
    job = SiteJob(Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, 1, x, np.array([1], np.uint16),
                  np.array([1], np.uint8), 1, w=w, dw=CsrDelta.from_dense(dw),
                  bias=np.zeros(1, np.int32))
    assert execute_job(job, CoreState(), LIMITS).y_ref[0, 0] == -116


def test_weight_bank_size_is_a_compiled_maximum() -> None:
    limits = CoreLimits(max_tokens=8, max_in=64, max_out=64, max_nnz_dw=64, lanes=8,
                        max_weights=64 * 16)
    rng = seeding.rng("test_weight_bank_size_is_a_compiled_maximum")
    for (o, i), expected in (((64, 16), CoreStatus.OK), ((16, 64), CoreStatus.OK),
                             ((64, 17), CoreStatus.DIMS)):
        mult, shift = choose_requant(np.full(o, 1e-3))
        job = SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, _x(rng, (2, i)), mult, shift, o,
                      w=_x(rng, (o, i)), bias=np.zeros(o, np.int32))
        assert unpack_result(GoldenCore(limits).run_packet(pack_job(job)), job).status == expected


def test_float64_product_is_exact_at_the_extremes() -> None:
    """The golden core's BLAS product equals the int64 one at the operand bounds (int9 deltas
    x int8 weights over a long row), where any rounding would show; operands past the bound
    take the int64 path."""
    from deltamtl.contract.golden_core import _int_matmul

    rng = seeding.rng("test_float64_product_is_exact_at_the_extremes")
    a = rng.choice(np.array([-255, 255]), size=(5, 4096)).astype(np.int64)
    w = rng.choice(np.array([-256, 256, -128, 127]), size=(7, 4096)).astype(np.int64)
    assert np.array_equal(_int_matmul(a, w), a @ w.T)
    big = np.full((2, 3), 1 << 40, np.int64)
    assert np.array_equal(_int_matmul(big, big), big @ big.T)
