"""The C++ core through ctypes (deltamtl.hls.emulator) against the golden core, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from deltamtl.contract.encoding import pack_job, trailer_status
from deltamtl.contract.formats import JobFlag, Mode, choose_requant
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import CsrDelta, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import CoreStatus
from deltamtl.contract.vectors import generate_random_vectors
from deltamtl.hls.emulator import HlsCoreExecutor

from tests.helpers import seeding

# Small limits of their own: a second library build, and refusals at small sizes.
# max_weights below max_in * max_out: the weight bank is sized by it, not by the dims. (The
# vector generator draws ordinary jobs up to 48 x 48 without checking max_weights, so it
# stays >= 48 * max_out here.)
SMALL = CoreLimits(max_tokens=20, max_in=96, max_out=36, max_nnz_dw=300, lanes=8,
                   max_weights=48 * 36)


def _job(rng, mode, flags, p, i, o, w=None, dw_density=0.0, refs=None):
    mult, shift = choose_requant(rng.uniform(0.5, 2, o) * 127 / (128 * 128 * np.sqrt(i)))
    x = rng.integers(-128, 128, (p, i)).astype(np.int8)
    dw = None
    if dw_density and w is not None:
        mask = rng.random((o, i)) < dw_density
        dense = np.where(mask, rng.integers(-20, 21, (o, i)), 0)
        dense = np.clip(w.astype(np.int32) + dense, -128, 127) - w.astype(np.int32)
        dw = CsrDelta.from_dense(dense.astype(np.int8))
    job = SiteJob(Mode(mode), JobFlag(flags), int(rng.integers(1, 6)), x, mult, shift, o,
                  w=w if flags & JobFlag.LOAD_W else None, dw=dw, tag=int(rng.integers(0, 1 << 16)))
    if mode != Mode.TEMPORAL:
        job.bias = rng.integers(-(1 << 20), 1 << 20, o).astype(np.int32)
    if refs is not None and flags & JobFlag.LOAD_REF:
        job.x_ref, job.y_ref = refs
    return job


def test_random_vector_file_matches_golden_packets():
    """The vector generator's records (every class, resets, refusals) through the C++ core."""
    rng = seeding.rng("test_random_vector_file_matches_golden_packets")
    records = generate_random_vectors(SMALL, n_sequences=24, seed=int(rng.integers(1 << 31)))
    core = HlsCoreExecutor(SMALL)
    counts: dict[str, int] = {}
    for k, rec in enumerate(records):
        if rec.is_reset:
            core.reset()
            continue
        out = core.run_packet(rec.words_in)
        assert np.array_equal(out, rec.words_out), f"record {k} ({rec.cls}) differs from golden"
        counts[rec.cls] = counts.get(rec.cls, 0) + 1
    assert sum(counts.values()) >= 100
    assert {"dense", "temporal", "task", "sub_temporal_patch", "refused_length",
            "refused_dims", "max_dims"} <= set(counts)


def test_run_job_and_state_isolation_between_executors():
    """Two executors over one library keep separate resident state; run_job == golden."""
    rng = seeding.rng("test_run_job_and_state_isolation_between_executors")
    a, b = HlsCoreExecutor(SMALL), HlsCoreExecutor(SMALL)
    ga, gb = GoldenCore(SMALL), GoldenCore(SMALL)
    for core, gold in ((a, ga), (b, gb)):
        p, i, o = (int(v) for v in rng.integers(1, [SMALL.max_tokens, SMALL.max_in, SMALL.max_out],
                                                   endpoint=True))
        i = min(i, SMALL.max_weights // o)
        w = rng.integers(-128, 128, (o, i)).astype(np.int8)
        job = _job(rng, Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, p, i, o, w=w,
                   dw_density=0.1)
        got, want = core.run_job(job), gold.run_job(job)
        assert got.status == want.status == CoreStatus.OK
        assert np.array_equal(got.y, want.y) and np.array_equal(got.y_ref, want.y_ref)
        core._dims = (p, i, o, w)
    # interleave resident-state jobs: each executor must see its own bank and references
    for _ in range(3):
        for core, gold in ((a, ga), (b, gb)):
            p, i, o, w = core._dims
            mode = Mode.TEMPORAL if rng.random() < 0.5 else Mode.TASK
            job = _job(rng, mode, JobFlag.EMIT_REF, p, i, o, w=w, dw_density=0.2)
            got, want = core.run_job(job), gold.run_job(job)
            assert (got.status, got.tag, got.nnz_act) == (want.status, want.tag, want.nnz_act)
            assert np.array_equal(got.y, want.y)
            assert np.array_equal(got.x_ref, want.x_ref) and np.array_equal(got.y_ref, want.y_ref)
    a.reset()
    job = _job(rng, Mode.TEMPORAL, JobFlag.NONE, *a._dims[:3])
    assert a.run_job(job).status == CoreStatus.NO_STATE  # reset forgot a's state ...
    p, i, o, _w = b._dims
    assert b.run_job(_job(rng, Mode.TEMPORAL, JobFlag.NONE, p, i, o)).status == CoreStatus.OK


def test_refused_packet_keeps_resident_state():
    """A LOAD_W packet cut short (LENGTH) must not disturb the resident bank or references."""
    rng = seeding.rng("test_refused_packet_keeps_resident_state")
    core, gold = HlsCoreExecutor(SMALL), GoldenCore(SMALL)
    p, i, o = 5, 17, 11
    w = rng.integers(-128, 128, (o, i)).astype(np.int8)
    first = _job(rng, Mode.DENSE, JobFlag.LOAD_W, p, i, o, w=w)
    assert np.array_equal(core.run_packet(pack_job(first)), gold.run_packet(pack_job(first)))
    other = rng.integers(-128, 128, (o, i)).astype(np.int8)
    bad = _job(rng, Mode.TEMPORAL, JobFlag.LOAD_W | JobFlag.LOAD_REF, p, i, o, w=other,
               refs=(rng.integers(-128, 128, (p, i)).astype(np.int8),
                     rng.integers(-999, 999, (p, o)).astype(np.int32)))
    words = pack_job(bad)[:-3]
    out = core.run_packet(words)
    assert np.array_equal(out, gold.run_packet(words))
    assert trailer_status(out) == CoreStatus.LENGTH
    after = _job(rng, Mode.TEMPORAL, JobFlag.EMIT_REF, p, i, o)
    assert np.array_equal(core.run_packet(pack_job(after)), gold.run_packet(pack_job(after)))


def test_empty_packet_is_an_error():
    with pytest.raises(ValueError, match="at least one word"):
        HlsCoreExecutor(SMALL).run_packet(np.zeros(0, np.uint64))


@pytest.mark.slow
@pytest.mark.parametrize("limits", [
    CoreLimits(max_tokens=9, max_in=13, max_out=11, max_nnz_dw=40, lanes=1),
    CoreLimits(max_tokens=33, max_in=70, max_out=67, max_nnz_dw=900, lanes=3),
    CoreLimits(max_tokens=64, max_in=96, max_out=384, max_nnz_dw=5000, lanes=64),
    CoreLimits(max_tokens=40, max_in=200, max_out=150, max_nnz_dw=2000, lanes=16,
               max_weights=150 * 40 + 7),
], ids=["lanes1", "lanes3", "lanes64", "weights_bound"])
def test_other_limits_and_lane_counts(limits):
    """The kernels are generic in the compiled maxima and L (one library build each)."""
    rng = seeding.rng("test_other_limits_and_lane_counts")
    records = generate_random_vectors(limits, n_sequences=30, seed=int(rng.integers(1 << 31)))
    core = HlsCoreExecutor(limits)
    for k, rec in enumerate(records):
        if rec.is_reset:
            core.reset()
            continue
        assert np.array_equal(core.run_packet(rec.words_in), rec.words_out), (k, rec.cls)
