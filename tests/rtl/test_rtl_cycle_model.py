"""The analytical cycle model's own rules (no simulator: the RTL comparison is in
test_rtl_cosim.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from deltamtl.contract.cycle_model import (
    MAC_DRAIN,
    PATCH_DRAIN,
    core_cycles,
    cycle_breakdown,
    legacy_act_cycles,
    packet_breakdown,
    union_per_tile,
)
from deltamtl.contract.encoding import pack_job, with_header_field
from deltamtl.contract.formats import JobFlag, Mode
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import CsrDelta, SiteJob
from deltamtl.contract.limits import CoreLimits

from tests.helpers.seeding import SEED

pytestmark = pytest.mark.cosim  # make cosim

LIMITS = CoreLimits(max_tokens=24, max_in=64, max_out=64, max_nnz_dw=1024, lanes=8,
                    token_rows=4)


@pytest.fixture
def rng():
    return np.random.default_rng(SEED)


def _dense(rng, p, i, o, flags=JobFlag.LOAD_W, dw=None):
    w = rng.integers(-100, 100, (o, i)).astype(np.int8)
    x = rng.integers(-128, 128, (p, i)).astype(np.int8)
    return SiteJob(Mode.DENSE, flags, 1, x, np.full(o, 300, np.uint16), np.full(o, 20, np.uint8),
                   o, w=w, dw=dw, bias=rng.integers(-99, 99, o).astype(np.int32))


def test_resident_task_without_deltas_costs_one_cycle_per_token_and_group(rng):
    p, i, o = 6, 16, 24
    core = GoldenCore(LIMITS)
    dense = _dense(rng, p, i, o)
    core.run_packet(pack_job(dense))
    same = SiteJob(Mode.TASK, JobFlag.NONE, 1, dense.x.copy(), dense.req_mult, dense.req_shift,
                   o, bias=np.zeros(o, np.int32))
    state = copy.deepcopy(core.state)
    b = packet_breakdown(pack_job(same), state, LIMITS)
    t = LIMITS.token_rows
    # empty unions: every (group, tile) takes its T-cycle minimum (the shadow rows' store
    # and load), plus the prologue's load and the epilogue's store
    assert b.act == -(-o // LIMITS.lanes) * -(-p // t) * t + 2 * t + MAC_DRAIN
    assert b.wpass == b.patch == 0
    assert core_cycles(same, LIMITS, state=state) == b.total
    # today's engine: one cycle per token and group
    legacy = packet_breakdown(pack_job(same), state, LIMITS, engine="v1")
    assert legacy.act == -(-o // LIMITS.lanes) * p + MAC_DRAIN


def test_dense_with_delta_weights_patches_and_unpatches(rng):
    p, i, o = 5, 20, 17
    dense_dw = np.where(rng.random((o, i)) < 0.3, rng.integers(-5, 6, (o, i)), 0).astype(np.int8)
    job = _dense(rng, p, i, o, dw=CsrDelta.from_dense(dense_dw))
    b = cycle_breakdown(job, LIMITS.lanes)  # a lane count alone: T = 1
    assert b.patch == b.unpatch == job.nnz_dw + PATCH_DRAIN
    nnz = np.count_nonzero(job.x, axis=1)
    # T = 1: max(|U_k|, 1) per token and group, one prologue and one epilogue cycle
    assert b.act == -(-o // LIMITS.lanes) * int(np.maximum(nnz, 1).sum()) + 2 + MAC_DRAIN
    assert cycle_breakdown(job, LIMITS.lanes, engine="v1").act == (
        -(-o // LIMITS.lanes) * int(np.maximum(nnz, 1).sum()) + MAC_DRAIN)
    # the same job as a TASK replaces patch/unpatch by the weight-sparse pass
    task = copy.copy(job)
    task.mode, task.flags, task.w = Mode.TASK, JobFlag.LOAD_REF, None
    task.x_ref = job.x.copy()
    task.y_ref = np.zeros((p, o), np.int32)
    bt = cycle_breakdown(task, LIMITS)
    assert bt.patch == 0 and bt.wpass == -(-p // LIMITS.lanes) * job.nnz_dw + MAC_DRAIN


def test_refused_packets_cost_their_length_plus_trailer(rng):
    job = _dense(rng, 4, 8, 8)
    words = pack_job(job)
    empty = GoldenCore(LIMITS).state
    short = packet_breakdown(words[:-1], empty, LIMITS)
    assert short.total == (words.size - 1) + 1 + 1 + 1 + 5  # input, setup, decide, trailer, latency
    bad = with_header_field(words, "mode", 3)  # no fourth mode: refused on the header
    refused = packet_breakdown(bad, empty, LIMITS)
    assert refused.setup == 0 and refused.compute == 0 and refused.output == 1


def test_header_dict_needs_nonzero_information():
    hdr = {"mode": Mode.DENSE, "flags": JobFlag.LOAD_W, "tokens": 4, "in_dim": 8, "out_dim": 8,
           "nnz_dw": 0}
    with pytest.raises(ValueError, match="nnz_per_token"):
        cycle_breakdown(hdr, 8)
    # dense counts (8 per token): each tile's union is all 8 inputs
    assert cycle_breakdown({**hdr, "nnz_act": 32}, 8).act == 4 * 8 + 2 + MAC_DRAIN
    assert cycle_breakdown({**hdr, "nnz_act": 32}, 8, engine="v1").act == 32 + MAC_DRAIN
    limits4 = CoreLimits(max_tokens=4, max_in=8, max_out=8, max_nnz_dw=1, lanes=8, token_rows=4)
    assert cycle_breakdown({**hdr, "nnz_act": 32}, limits4).act == 8 + 2 * 4 + MAC_DRAIN
    # sparse counts: the union is assumed to be the tile's sum (distinct inputs), at least T
    assert cycle_breakdown({**hdr, "nnz_act": 4}, limits4).act == 4 + 2 * 4 + MAC_DRAIN
    assert cycle_breakdown({**hdr, "nnz_act": 2}, limits4).act == 4 + 2 * 4 + MAC_DRAIN
    with pytest.raises(ValueError, match="entries"):
        cycle_breakdown(hdr, 8, nnz_per_token=[1, 2])


def test_union_per_tile_counts_distinct_inputs_of_each_tile():
    keep = np.zeros((7, 10), bool)
    keep[0, [1, 2]] = keep[1, [2, 3]] = True  # tile 0: inputs {1, 2, 3}
    keep[5, 9] = keep[6, 9] = True            # tile 1 (tokens 4..7, partial): {9}
    assert union_per_tile(keep, 4).tolist() == [3, 1]
    assert union_per_tile(keep, 8).tolist() == [4]   # T > P: one partial tile
    assert union_per_tile(keep, 1).tolist() == keep.sum(axis=1).tolist()


def test_scaled_engine_beats_the_legacy_one_on_a_dense_job():
    """A dense 197 x 384 x 384 job at L=64, T=16: union = I per tile, so the act phase is
    G*NT*I + 2T + drain (the swaps overlap the MACs), about T times fewer cycles than one
    non-zero per cycle."""
    p, i, o, lanes, t = 197, 384, 384, 64, 16
    hdr = {"mode": Mode.DENSE, "flags": JobFlag.NONE, "tokens": p, "in_dim": i, "out_dim": o,
           "nnz_dw": 0, "nnz_act": p * i}
    limits = CoreLimits(max_tokens=p, max_in=i, max_out=o, max_nnz_dw=1, lanes=lanes,
                        token_rows=t)
    act = cycle_breakdown(hdr, limits).act
    assert act == 6 * 13 * 384 + 2 * 16 + MAC_DRAIN
    assert legacy_act_cycles(o, lanes, np.full(p, i)) == 6 * p * i + MAC_DRAIN
    assert p * i * o / act > 864
