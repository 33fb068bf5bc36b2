"""No drift: 1000 frames with keyframes off, every stored reference follows the last-sent
rule, every site input stays within th of it, and y_ref == x_ref W^T + b exactly at the end."""

from __future__ import annotations

import time

import numpy as np
from deltamtl.host.sources import ArraySource
from deltamtl.host.stream import Streamer

from tests.helpers.streaming import random_walk, small_model

FRAMES = 1000


def test_no_drift_over_1000_frames() -> None:
    qm = small_model(th=4)
    s = Streamer(qm, "golden", "off")
    t0 = time.perf_counter()
    s.run(ArraySource(random_walk(FRAMES, step=3)))
    rep = s.finish_drift()
    seconds = time.perf_counter() - t0
    print(rep.markdown(), f"({seconds:.1f} s)")
    assert rep.frames == FRAMES and rep.keyframes == 1
    assert rep.over_threshold == 0 and rep.shadow_mismatches == 0
    assert rep.accumulator_mismatches == 0 and rep.ok
    # every task with references of its own was checked on every frame: base and depth
    # above its boundary, normals everywhere; edges shares the base's (TASK jobs only)
    assert set(rep.max_abs_error) == {"semseg", "depth", "normals"}
    assert all(0 < e < 4 for e in rep.max_abs_error.values())  # inputs did move, within th
    blocks = [sp for sp in qm.sites if sp.layer >= 0]
    owned = len(qm.sites) + len(blocks) + sum(sp.layer > 0 for sp in blocks)  # base, normals, depth
    assert rep.inputs_checked == FRAMES * owned
    assert rep.accumulators_checked == owned
    # the check is not vacuous: one wrong accumulator element is found
    key = next(iter(s.runner.y_ref))
    s.runner.y_ref[key] = s.runner.y_ref[key].copy()
    s.runner.y_ref[key].flat[0] += 1
    s.drift.report.accumulator_mismatches = 0
    assert s.drift.finish(s.runner).accumulator_mismatches == 1


def test_a_reference_not_following_the_rule_is_caught() -> None:
    qm = small_model(th=4)
    s = Streamer(qm, "golden", "off")
    frames = ArraySource(random_walk(3))
    it = iter(frames)
    s.process(next(it))
    key = (qm.base, qm.sites[1].name)
    s.runner.x_ref[key] = np.clip(s.runner.x_ref[key].astype(int) + 9, -128, 127).astype(np.int8)
    s.process(next(it))
    assert s.drift.report.shadow_mismatches >= 1 and not s.drift.report.ok
