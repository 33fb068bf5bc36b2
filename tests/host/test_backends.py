"""Backends by name: every executor runs the same frames to the same bits; bad names are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deltamtl.host.backends import BACKENDS, make_executor
from deltamtl.host.runner import GoldenRunner
from deltamtl.model.export.quantized_model import ReusePolicy
from deltamtl.model.quant.assemble import random_multitask
from deltamtl.model.quant.quantizer import Quantizer

from tests.helpers.seeding import SEED


@pytest.fixture(scope="module")
def quantised():
    """A random 4-task model, calibrated on the frames it then runs (16x16, 3 frames)."""
    q = Quantizer(random_multitask(SEED % 10_000))
    rng = np.random.default_rng([SEED, 41])
    frames = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    q.calibrate([torch.from_numpy(frames.transpose(0, 3, 1, 2) / 255.0).float()])
    qm = q.to_quantized()
    # thresholds above 1: a non-keyframe then differs from a keyframe, so the forced
    # keyframe below is visible in the outputs
    qm.policy = ReusePolicy(depth=qm.depth, keyframe_interval=5,
                            thresholds={t: [6] * qm.depth for t in qm.tasks})
    return qm, frames


def test_every_backend_gives_the_golden_bits(quantised) -> None:
    qm, frames = quantised
    ref = GoldenRunner(qm, make_executor("golden", qm)).run_clip(frames)
    # pynq needs the board and rtl a Verilator build: tests/host/test_pynq_driver.py
    for name in sorted(set(BACKENDS) - {"pynq", "rtl"}):
        got = GoldenRunner(qm, make_executor(name, qm)).run_clip(frames)
        for i, (a, b) in enumerate(zip(ref, got, strict=True)):
            for task in a:
                assert np.array_equal(a[task], b[task]), (name, i, task)


def test_forced_keyframe_equals_a_fresh_run_from_that_frame(quantised) -> None:
    qm, frames = quantised
    runner = GoldenRunner(qm)
    runner.run_frame(frames[0])
    forced = runner.run_frame(frames[1], keyframe=True)
    fresh = GoldenRunner(qm).run_frame(frames[1])
    assert runner.last_keyframe
    for task in fresh:
        assert np.array_equal(forced[task], fresh[task]), task
    scheduled = GoldenRunner(qm)
    scheduled.run_frame(frames[0])
    temporal = scheduled.run_frame(frames[1])
    assert not scheduled.last_keyframe
    assert any(not np.array_equal(temporal[t], fresh[t]) for t in fresh)


def test_every_backend_is_registered() -> None:
    assert set(BACKENDS) == {"golden", "emulated", "virtual", "pynq", "rtl"}


def test_pynq_backend_needs_a_bitfile(quantised) -> None:
    qm, _ = quantised
    with pytest.raises(ValueError, match="bitfile"):
        make_executor("pynq", qm)


def test_unknown_backend_is_named(quantised) -> None:
    qm, _ = quantised
    with pytest.raises(ValueError, match="unknown backend 'fpga'.*golden"):
        make_executor("fpga", qm)
