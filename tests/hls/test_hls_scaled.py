"""The scaled engine (issue 18): the activation-sparse pass as a token_rows x lanes MAC array,
bit-exact with GoldenCore for T = 1, 2, 4, 8 (partial last tile, T > P), and its act_pass trip
count equal to the schedule of docs/hls.md: G * sum_k max(|U_k|, T) + 2T (the swaps overlap
the MACs through the shadow rows)."""

from __future__ import annotations

import numpy as np
import pytest
from deltamtl.contract.formats import JobFlag, Mode, choose_requant, keep_delta
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import CsrDelta, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import CoreStatus
from deltamtl.contract.vectors import generate_random_vectors
from deltamtl.hls.emulator import HlsCoreExecutor

from tests.helpers import seeding

ROWS = (1, 2, 4, 8)


def _limits(t: int) -> CoreLimits:
    # 21 tokens: no T divides it; 50 inputs: a partial last X word. max_weights >= 48 * max_out
    # (the vector generator draws jobs up to 48 x 48 without checking it).
    return CoreLimits(max_tokens=21, max_in=50, max_out=36, max_nnz_dw=400, lanes=8,
                      max_weights=50 * 36, token_rows=t)


def _act_iterations(kept: np.ndarray, t: int, lanes: int, out_dim: int) -> int:
    """The schedule: T idle prologue iterations, per output group, per tile max(|U_k|, T)
    iterations (one MAC per input in the tile's union; the shadow rows' T-iteration store of
    the previous tile runs underneath), T iterations storing the last."""
    p = kept.shape[0]
    tiles = -(-p // t)
    slots = sum(max(int(np.count_nonzero(kept[k * t:(k + 1) * t].any(axis=0))), t)
                for k in range(tiles))
    return -(-out_dim // lanes) * slots + 2 * t


@pytest.mark.parametrize("t", ROWS)
def test_random_vectors_bit_exact(t):
    """Every generated class (resets, refusals, dW, LOAD_REF/EMIT_REF) through the T-row core."""
    lim = _limits(t)
    rng = seeding.rng(f"test_random_vectors_bit_exact{t}")
    records = generate_random_vectors(lim, n_sequences=12, seed=int(rng.integers(1 << 31)))
    core = HlsCoreExecutor(lim)
    classes = set()
    for k, rec in enumerate(records):
        if rec.is_reset:
            core.reset()
            continue
        assert np.array_equal(core.run_packet(rec.words_in), rec.words_out), (k, rec.cls)
        classes.add(rec.cls)
    assert {"dense", "temporal", "task", "sub_temporal_patch", "max_dims", "zero_delta"} <= classes


def _job(rng, mode, flags, x, o, *, w=None, dw=None, refs=None, th=4):
    mult, shift = choose_requant(rng.uniform(0.5, 2, o) * 127 / (128 * 128 * np.sqrt(x.shape[1])))
    job = SiteJob(Mode(mode), JobFlag(flags), th, x, mult, shift, o, w=w, dw=dw,
                  tag=int(rng.integers(0, 1 << 16)))
    if mode != Mode.TEMPORAL:
        job.bias = rng.integers(-(1 << 20), 1 << 20, o).astype(np.int32)
    if refs is not None:
        job.x_ref, job.y_ref = refs
    return job


def _sparse_step(rng, x, density):
    """x with a fraction of its entries redrawn: some tokens of a tile change, others not."""
    x = x.copy()
    m = rng.random(x.shape) < density
    m[rng.random(x.shape[0]) < 0.3] = False  # whole tokens unchanged
    x[m] = rng.integers(-128, 128, int(m.sum())).astype(np.int8)
    return x


@pytest.mark.parametrize("t", ROWS)
@pytest.mark.parametrize("p", [1, 3, 5, 9, 21])
@pytest.mark.parametrize("o", [5, 13, 20])
def test_tiles_modes_and_flags(t, p, o):
    """DENSE / TEMPORAL / TASK, with and without dW, LOAD_REF / EMIT_REF, for P below T, a
    partial last tile and whole tiles, one to three output groups of 8 lanes (the last
    partial; G = 1: consecutive slots are tiles of one group; P <= T: of one tile): outputs,
    references and nnz_act as the golden's, and the act_pass trip count as the schedule
    (empty tiles and inputs included)."""
    lim = _limits(t)
    rng = seeding.rng(f"test_tiles_modes_and_flags{t}_{p}" + ("" if o == 13 else f"_{o}"))
    core, gold = HlsCoreExecutor(lim), GoldenCore(lim)
    i = 19  # a partial X word
    w = rng.integers(-128, 128, (o, i)).astype(np.int8)

    def dw_for(density):
        mask = rng.random((o, i)) < density
        delta = np.where(mask, rng.integers(-20, 21, (o, i)), 0)
        delta = np.clip(w.astype(np.int32) + delta, -128, 127) - w.astype(np.int32)
        return CsrDelta.from_dense(delta.astype(np.int8))

    def run(job, x_ref_before):
        got, want = core.run_job(job), gold.run_job(job)
        assert want.status == CoreStatus.OK
        assert (got.status, got.tag, got.nnz_act) == (want.status, want.tag, want.nnz_act)
        assert np.array_equal(got.y, want.y)
        if job.flags & JobFlag.EMIT_REF:
            assert np.array_equal(got.x_ref, want.x_ref) and np.array_equal(got.y_ref, want.y_ref)
        kept = job.x != 0 if job.mode == Mode.DENSE else keep_delta(job.x, x_ref_before, job.th) != 0
        assert core.act_iterations() == _act_iterations(kept, t, lim.lanes, o)

    x = rng.integers(-128, 128, (p, i)).astype(np.int8)
    x[:, 3] = 0  # an input no token keeps
    run(_job(rng, Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, x, o, w=w), None)
    run(_job(rng, Mode.DENSE, JobFlag.NONE, x, o, dw=dw_for(0.2)), None)  # patch, then unpatch
    for flags, dw in ((JobFlag.EMIT_REF, None), (JobFlag.NONE, dw_for(0.1)),
                      (JobFlag.EMIT_REF, dw_for(0.3))):
        x_ref = gold.state.x_ref.copy()
        x = _sparse_step(rng, x, 0.15)
        run(_job(rng, Mode.TEMPORAL, flags, x, o, dw=dw), x_ref)
    x_ref = gold.state.x_ref.copy()
    run(_job(rng, Mode.TEMPORAL, JobFlag.EMIT_REF, x_ref.copy(), o), x_ref)  # all tiles empty
    for flags, dw in ((JobFlag.EMIT_REF, None), (JobFlag.NONE, dw_for(0.2)),
                      (JobFlag.EMIT_REF, dw_for(0.25))):
        x_ref = gold.state.x_ref.copy()
        run(_job(rng, Mode.TASK, flags, _sparse_step(rng, x, 0.2), o, dw=dw), x_ref)
    # references loaded with the job (LOAD_REF), TEMPORAL and TASK, with dW
    refs = (rng.integers(-128, 128, (p, i)).astype(np.int8),
            rng.integers(-(1 << 24), 1 << 24, (p, o)).astype(np.int32))
    for mode in (Mode.TEMPORAL, Mode.TASK):
        run(_job(rng, mode, JobFlag.LOAD_REF | JobFlag.EMIT_REF, _sparse_step(rng, refs[0], 0.3), o,
                 dw=dw_for(0.15), refs=refs, th=1), refs[0])


def test_union_skips_inputs_no_token_of_the_tile_keeps():
    """A delta at one input of one token costs one MAC iteration per group for its tile,
    whatever T: the union, not the dense tile, sets the MAC count."""
    for t in ROWS:
        lim = _limits(t)
        core, gold = HlsCoreExecutor(lim), GoldenCore(lim)
        rng = seeding.rng(f"test_union_skips{t}")
        p, i, o = 21, 50, 36
        w = rng.integers(-128, 128, (o, i)).astype(np.int8)
        x = rng.integers(-128, 128, (p, i)).astype(np.int8)
        first = _job(rng, Mode.DENSE, JobFlag.LOAD_W, x, o, w=w)
        assert core.run_job(first).status == gold.run_job(first).status == CoreStatus.OK
        x2 = x.copy()
        x2[17, 42] = np.int8(int(x[17, 42]) ^ 0x40)  # |d| = 64 >= th
        job = _job(rng, Mode.TEMPORAL, JobFlag.EMIT_REF, x2, o)
        got, want = core.run_job(job), gold.run_job(job)
        assert np.array_equal(got.y, want.y) and got.nnz_act == want.nnz_act == 1
        tiles = -(-p // t)
        # G = ceil(36 / 8) = 5; every tile's slot is T iterations (|U_k| <= 1 <= T)
        assert core.act_iterations() == 5 * tiles * t + 2 * t
