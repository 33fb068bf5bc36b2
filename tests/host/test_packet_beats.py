"""The host's packet path in beats of the core's width (issue 18)."""

from dataclasses import replace

import numpy as np
from deltamtl.contract.encoding import pack_job
from deltamtl.contract.formats import JobFlag, Mode, choose_requant
from deltamtl.contract.golden_core import GoldenCore, execute_job
from deltamtl.contract.jobs import CoreState, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.host.runner import PacketExecutor

from tests.helpers import seeding

LIMITS_B4 = CoreLimits(max_tokens=40, max_in=40, max_out=40, max_nnz_dw=64, lanes=32,
                       token_rows=4, beat_words=4)


def test_packet_executor_uses_its_cores_beats() -> None:
    rng = seeding.rng("beats executor")
    limits = LIMITS_B4
    ex = PacketExecutor(GoldenCore(limits))  # the width comes from the core's limits
    assert ex.beat_words == 4
    assert PacketExecutor(GoldenCore(replace(limits, beat_words=1))).beat_words == 1
    p, i, o = (int(v) for v in rng.integers(1, 40, 3))
    x = rng.integers(-128, 128, (p, i)).astype(np.int8)
    w = rng.integers(-128, 128, (o, i)).astype(np.int8)
    mult, shift = choose_requant(rng.uniform(0.2, 2.0, o) * 127 / (128 * 128 * np.sqrt(i)))
    job = SiteJob(Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, 1, x, mult, shift, o, w=w,
                  bias=rng.integers(-5000, 5000, o).astype(np.int32))
    got = ex.run_job(job)
    expect = execute_job(job, CoreState(), limits)
    np.testing.assert_array_equal(got.y, expect.y)
    np.testing.assert_array_equal(got.y_ref, expect.y_ref)
    assert ex.words_in == pack_job(job, 4).size and ex.words_in % 4 == 0
