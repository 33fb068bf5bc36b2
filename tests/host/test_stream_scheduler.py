"""Keyframe scheduler: fixed K with offset; adaptive keyframes on a scene cut and not on
a static clip; forced keyframes after dropped frames and after a fault, whose outputs
equal a fresh run from that keyframe."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from deltamtl.contract.jobs import JobResult, SiteJob
from deltamtl.host.backends import make_executor
from deltamtl.host.runner import SiteExecutor
from deltamtl.host.scheduler import KeyframeScheduler, override_policy
from deltamtl.host.sources import ArraySource, SyntheticSource
from deltamtl.host.stream import Streamer
from deltamtl.model.tasks import EMBED

from tests.helpers.streaming import random_walk, small_model


@pytest.fixture(scope="module")
def qm():
    return small_model()


def _keys(streamer: Streamer) -> list[tuple[int, str]]:
    return [(f.frame, f.reason) for f in streamer.stats.frames if f.keyframe]


def test_fixed_interval_with_offset(qm) -> None:
    qm3 = dataclasses.replace(qm, policy=override_policy(qm.policy, interval=4, offset=2))
    s = Streamer(qm3, "golden", "fixed")
    s.run(ArraySource(random_walk(11)))
    assert _keys(s) == [(0, "first"), (2, "interval"), (6, "interval"), (10, "interval")]
    s = Streamer(qm, "golden", 3)  # a K on the command line replaces the bundle's
    s.run(ArraySource(random_walk(7)))
    assert _keys(s) == [(0, "first"), (3, "interval"), (6, "interval")]
    # temporal frames really ran TEMPORAL jobs (their records measure a density)
    base = s.qm.base
    assert any(k.startswith(f"{base}/") for k in s.stats.frames[1].density)
    assert not any(k.startswith(f"{base}/") for k in s.stats.frames[3].density)


def test_adaptive_fires_on_a_scene_cut_and_not_on_a_static_clip(qm) -> None:
    size = (16, 16)
    cut = SyntheticSource([3, 4], 6, size, static_camera=True, static_objects=True, temporal_noise=0.0)
    s = Streamer(qm, "golden", "adaptive", density_limit=0.25)
    s.run(cut)
    assert _keys(s) == [(0, "first"), (6, "scene_cut")], [f.density for f in s.stats.frames]
    static = SyntheticSource([5], 12, size, static_camera=True, static_objects=True, temporal_noise=0.0)
    s = Streamer(qm, "golden", "adaptive", density_limit=0.25)
    s.run(static)
    assert _keys(s) == [(0, "first")]
    # steady fast motion: over the limit every frame, but no jump -- reason "density"
    s = Streamer(qm, "golden", "adaptive", density_limit=0.25)
    s.run(ArraySource(random_walk(5, step=60)))
    assert [f.reason for f in s.stats.frames[2:]] == ["density"] * 3, [f.embed_density for f in s.stats.frames]


def test_predicted_density_is_the_accelerators_measure(qm) -> None:
    """The scheduler's host-side density of the patch embedding equals what the TEMPORAL
    job then measures (nnz / elements in its record)."""
    frames = random_walk(6, step=8)
    s = Streamer(qm, "golden", "off")
    sched = KeyframeScheduler(s.qm, "adaptive", density_limit=1.0)
    embed = s.qm.site(-1, EMBED).name
    for i, fr in enumerate(frames):
        ref = s.runner.x_ref.get((s.qm.base, embed))
        predicted = sched.embed_density(fr, ref) if ref is not None else None
        res = s.process(ArraySource(frames[i:i + 1]).__iter__().__next__())
        if predicted is not None:
            assert res.stats.density[f"{s.qm.base}/{embed}"] == pytest.approx(predicted, abs=1e-12)


def test_dropped_frames_force_a_keyframe(qm) -> None:
    stamps = [0.0, 0.1, 0.2, 0.5, 0.6, 0.7]
    s = Streamer(qm, "golden", "off")
    s.run(ArraySource(random_walk(6), fps=10, timestamps=stamps))
    assert _keys(s) == [(0, "first"), (3, "dropped_frames")]
    assert s.stats.frames[3].gap == 2


class FaultOnce:
    """Wraps a real executor and raises once, at the n-th job (a time-out on the board)."""

    def __init__(self, inner: SiteExecutor, at_job: int) -> None:
        self.inner, self.at_job, self.jobs, self.resets = inner, at_job, 0, 0

    def run_job(self, job: SiteJob) -> JobResult:
        self.jobs += 1
        if self.jobs == self.at_job:
            raise TimeoutError(f"injected time-out at job {self.jobs}")
        return self.inner.run_job(job)

    def reset(self) -> None:
        self.resets += 1
        self.inner.reset()


@pytest.mark.parametrize("backend", ["golden", "emulated"])
def test_fault_recovery_equals_a_fresh_run_from_that_keyframe(qm, backend: str) -> None:
    frames = random_walk(9, step=6)
    ref = Streamer(qm, backend, "off")
    jobs_per_frame = None
    for fr in ArraySource(frames[:4]):
        ref.process(fr)
        jobs_per_frame = jobs_per_frame or len(ref.runner.records)
    fault = FaultOnce(make_executor(backend, qm), at_job=4 * jobs_per_frame + 5)  # mid frame 4
    s = Streamer(qm, backend, "off", executor=fault)
    results = []
    s.run(ArraySource(frames), on_result=results.append)
    assert _keys(s) == [(0, "first"), (4, "fault")]
    assert s.stats.frames[4].retries == 1 and fault.resets == 2  # construction + recovery
    assert len(s.runner.records) == 9 * jobs_per_frame  # the failed attempt left no records
    fresh = Streamer(qm, backend, "off")
    for i, fr in enumerate(ArraySource(frames[4:]), start=4):
        out = fresh.process(fr).outputs
        for task in out:
            assert np.array_equal(out[task], results[i].outputs[task]), (i, task)
    # a second fault on the same frame is not hidden
    twice = FaultOnce(make_executor(backend, qm), at_job=3)
    s = Streamer(qm, backend, "off", executor=twice, max_retries=0)
    with pytest.raises(TimeoutError, match="injected"):
        s.run(ArraySource(frames[:2]))


def test_virtual_board_hang_is_a_fault_keyframe_in_the_statistics(qm) -> None:
    """A real hung kernel on the virtual ZCU104: the runner times out, pulses the recovery
    line and re-runs the frame as a keyframe; the stream records it as a `fault` keyframe and
    the frames from there equal a fresh run started at that frame."""
    frames = random_walk(7, step=6)
    s = Streamer(qm, "virtual", "off", executor=make_executor("virtual", qm, timeout_s=0.2))
    results = []
    device = s.executor.inner.device
    for i, fr in enumerate(ArraySource(frames)):
        if i == 3:
            device.hang_after = 5  # the sixth job of frame 3 never completes
        results.append(s.process(fr))
    assert _keys(s) == [(0, "first"), (3, "fault")]
    assert device.counters.resets >= 1 and len(s.runner.faults) == 1
    fresh = Streamer(qm, "golden", "off")
    for i, fr in enumerate(ArraySource(frames[3:]), start=3):
        out = fresh.process(fr).outputs
        for task in out:
            assert np.array_equal(out[task], results[i].outputs[task]), (i, task)
