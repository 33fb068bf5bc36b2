"""The one MAC rule (contract/macs.py) against hand formulas and the golden core's jobs."""

from __future__ import annotations

import numpy as np
import pytest
from deltamtl.contract.formats import JobFlag, Mode, choose_requant, keep_delta
from deltamtl.contract.golden_core import execute_job
from deltamtl.contract.jobs import CoreState, CsrDelta, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.macs import dense_macs, job_macs
from deltamtl.contract.packets import CoreStatus

from tests.helpers import seeding

LIMITS = CoreLimits(max_tokens=32, max_in=64, max_out=64, max_nnz_dw=64 * 64, lanes=8)


def test_rule_per_mode_matches_hand_formulas() -> None:
    rng = seeding.rng("test_rule_per_mode_matches_hand_formulas")
    for _ in range(200):
        p, i, o = (int(v) for v in rng.integers(1, 65, 3))
        nnz_act = int(rng.integers(0, p * i + 1))
        nnz_dw = int(rng.integers(0, o * i + 1))
        # DENSE: x over the (patched) bank; the patch W_b += dW multiplies nothing
        assert job_macs(Mode.DENSE, p, i, o, nnz_dw, nnz_act) == nnz_act * o
        assert job_macs(Mode.DENSE, p, i, o, 0, nnz_act) == nnz_act * o
        # TEMPORAL: d over the (patched) bank, with or without dW
        assert job_macs(Mode.TEMPORAL, p, i, o, nnz_dw, nnz_act) == nnz_act * o
        assert job_macs(Mode.TEMPORAL, p, i, o, 0, nnz_act) == nnz_act * o
        # TASK: d W_b^T, then x_k dW^T over dW's non-zeros for every token
        assert job_macs(Mode.TASK, p, i, o, nnz_dw, nnz_act) == nnz_act * o + p * nnz_dw
        assert job_macs(Mode.TASK, p, i, o, 0, nnz_act) == nnz_act * o
        assert dense_macs(p, i, o) == p * i * o
    # expected counts (densities) give expected MACs
    assert job_macs(Mode.TASK, 4, 10, 6, 0.5 * 60, 0.25 * 40) == pytest.approx(0.25 * 40 * 6 + 4 * 30)


def test_counts_outside_the_job_are_refused() -> None:
    with pytest.raises(ValueError, match="nnz_act"):
        job_macs(Mode.DENSE, 2, 3, 4, 0, 7)
    with pytest.raises(ValueError, match="nnz_dw"):
        job_macs(Mode.TASK, 2, 3, 4, 13, 1)
    with pytest.raises(ValueError):
        job_macs(7, 2, 3, 4, 0, 1)


@pytest.mark.parametrize("mode", list(Mode))
def test_golden_core_jobs_with_dw(mode: Mode) -> None:
    """A job carrying dW, run by the golden core: the rule on its header and the core's
    nnz_act equals the multiplications of its passes, counted here from the operands."""
    rng = seeding.rng("test_golden_core_jobs_with_dw", mode.name)
    for _ in range(20):
        p, i, o = int(rng.integers(1, 17)), int(rng.integers(1, 40)), int(rng.integers(1, 40))
        w = rng.integers(-64, 64, (o, i)).astype(np.int8)
        dw = np.where(rng.random((o, i)) < 0.3, rng.integers(-9, 10, (o, i)), 0).astype(np.int8)
        x = np.where(rng.random((p, i)) < 0.3, 0, rng.integers(-128, 128, (p, i))).astype(np.int8)
        x_ref = np.clip(x.astype(int) + rng.integers(-6, 7, (p, i)), -128, 127).astype(np.int8)
        mult, shift = choose_requant(np.full(o, 1e-4))
        th = int(rng.integers(1, 5))
        flags = JobFlag.LOAD_W | (JobFlag.NONE if mode == Mode.DENSE else JobFlag.LOAD_REF)
        job = SiteJob(mode=mode, flags=flags, th=th, x=x, req_mult=mult, req_shift=shift,
                      out_dim=o, w=w, dw=CsrDelta.from_dense(dw) if dw.any() else None,
                      bias=np.zeros(o, np.int32) if mode != Mode.TEMPORAL else None)
        if mode != Mode.DENSE:
            job.x_ref = x_ref
            job.y_ref = rng.integers(-1000, 1000, (p, o)).astype(np.int32)
        res = execute_job(job, CoreState(), LIMITS)
        assert res.status == CoreStatus.OK
        if mode == Mode.DENSE:
            products = np.count_nonzero(x) * o  # every non-zero x times the patched bank row
        else:
            products = np.count_nonzero(keep_delta(x, x_ref, th)) * o
        if mode == Mode.TASK:
            products += p * np.count_nonzero(dw)  # weight-sparse pass, every token
        assert job_macs(mode, p, i, o, job.nnz_dw, res.nnz_act) == products
