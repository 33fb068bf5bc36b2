"""One runner, several executors: the whole-video runner on the emulated HLS kernels
(C++ core alone, and fetch -> core -> commit over DDR) gives the numpy golden core's outputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.limits import TINY_LIMITS
from deltamtl.hls.emulator import HlsCoreExecutor, HlsSystemExecutor
from deltamtl.host.runner import GoldenRunner
from deltamtl.model.export.quantized_model import ReusePolicy
from deltamtl.model.quant.assemble import random_multitask
from deltamtl.model.quant.quantizer import Quantizer

from tests.helpers import seeding

torch.set_num_threads(1)
pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed (HLS emulation)")


@pytest.mark.parametrize("kind", ["core", "system"])
def test_runner_on_hls_emulator_matches_golden(kind: str) -> None:
    seed = seeding.seed_for("test_runner_on_hls_emulator_matches_golden", bits=20)
    q = Quantizer(random_multitask(seed))
    q.calibrate([torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed))])
    qm = q.to_quantized()
    qm.policy = ReusePolicy(depth=qm.depth, keyframe_interval=2, boundaries={"depth": 0, "edges": -1},
                            thresholds={t: [2, 3] for t in qm.tasks})
    executor = (HlsCoreExecutor if kind == "core" else HlsSystemExecutor)(TINY_LIMITS)
    rng = np.random.default_rng(seed)
    frames = np.clip(rng.integers(0, 256, (1, 16, 16, 3)) + rng.integers(-6, 7, (3, 16, 16, 3)).cumsum(0),
                     0, 255).astype(np.uint8)
    ref = GoldenRunner(qm, GoldenCore(TINY_LIMITS), trace=True)
    hls = GoldenRunner(qm, executor, trace=True)
    for f in frames:
        a, b = ref.run_frame(f), hls.run_frame(f)
        for t in a:
            np.testing.assert_array_equal(a[t], b[t])
    for tr_a, tr_b in zip(ref.trace, hls.trace, strict=True):
        for key, (_x, y) in tr_a.items():
            np.testing.assert_array_equal(tr_b[key][1], y, err_msg=str(key))
    assert [r.nnz_act for r in ref.records] == [r.nnz_act for r in hls.records]
