"""The runner's MACs: every job charged by the contract's rule (contract/macs.py), and a
clip's totals equal to the accounting's (model/sharing/accounting.py) at the same densities."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from deltamtl.contract.formats import Mode
from deltamtl.host.runner import GoldenRunner
from deltamtl.model.sharing.accounting import site_macs
from deltamtl.model.sharing.reuse import Policy
from deltamtl.model.tasks import BLOCK_SITES, EMBED

from tests.helpers.streaming import random_walk, small_model

pytestmark = pytest.mark.quant

FRAMES, INTERVAL = 7, 3


@pytest.fixture(scope="module")
def run() -> tuple:
    qm = small_model(th=4, interval=INTERVAL)  # depth above block 0, normals above -1
    runner = GoldenRunner(qm, trace=True)
    runner.run_clip(random_walk(FRAMES, seed=20))
    return qm, runner


def test_every_job_is_charged_by_its_mode_formula(run) -> None:
    qm, runner = run
    for r in runner.records:
        sp = qm.site(r.layer, r.site)
        p, i, o = qm.tokens, sp.in_dim, sp.out_dim
        if r.mode == Mode.DENSE:
            x = runner.trace[r.frame][(r.task, sp.name)][0]
            assert r.nnz_act == np.count_nonzero(x)
            assert r.macs == np.count_nonzero(x) * o  # dW (if any) merged into the bank
        elif r.mode == Mode.TEMPORAL:
            assert r.macs == r.nnz_act * o  # dW (if any) merged into the bank
        else:
            assert r.macs == r.nnz_act * o + p * r.nnz_dw
        assert r.macs <= p * i * o + p * r.nnz_dw


def test_subtask_temporal_job_with_dw_is_charged_nnz_d_times_o(run) -> None:
    qm, runner = run
    jobs = [r for r in runner.records if r.mode == Mode.TEMPORAL and r.task != qm.base]
    assert jobs and all(r.nnz_dw > 0 for r in jobs)
    for r in jobs:
        assert r.macs == r.nnz_act * qm.site(r.layer, r.site).out_dim


def test_runner_totals_equal_the_accounting(run) -> None:
    """Modes from the float reuse model's policy, densities from the runner's jobs,
    MACs from the accounting: the same totals per task as the runner's."""
    qm, runner = run
    pol = qm.policy
    policy = Policy(depth=qm.depth, keyframe_interval=pol.keyframe_interval,
                    task_reuse=pol.task_reuse, boundaries=dict(pol.boundaries))
    nnz = {(r.frame, r.task, r.layer, r.site): (r.mode, r.nnz_act) for r in runner.records}
    sites = [(-1, EMBED)] + [(layer, s) for layer in range(qm.depth) for s in BLOCK_SITES]
    expected: dict[str, int] = defaultdict(int)
    for f in range(FRAMES):
        keyframe = policy.is_keyframe(f)
        for layer, site in sites:
            sp = qm.site(layer, site)
            for t in (qm.tasks[:1] if layer < 0 else qm.tasks):
                mode = (policy.base_mode(keyframe) if t == qm.base
                        else policy.sub_mode(t, layer, keyframe)[0])
                run_mode, nnz_act = nnz[(f, t, layer, site)]
                assert run_mode == mode, (f, t, layer, site)
                nnz_dw = sp.dw[t].nnz if t in sp.dw else 0
                expected[t] += site_macs(mode, qm.tokens, sp.in_dim, sp.out_dim, nnz_act, nnz_dw)
    assert dict(expected) == {t: v["macs"] for t, v in runner.totals().items()}
