"""Boundary selection, threshold calibration and density measurement on random models."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from deltamtl.model.sharing.density import (
    calibrate_thresholds,
    choose_boundary,
    measure_densities,
    site_input_scale,
)
from deltamtl.model.sharing.subtasks import BASE_TASK

from tests.helpers import seeding
from tests.helpers.sharing import make_system

pytestmark = pytest.mark.sharing  # make test-sharing


def _brute_boundary(ct, cm):
    costs = {b: sum(ct[: b + 1]) + sum(cm[b + 1:]) for b in range(-1, len(ct))}
    best = min(costs.values())
    return min(b for b, c in costs.items() if c == best)


def test_choose_boundary_matches_brute_force() -> None:
    rng = seeding.rng("test_choose_boundary_matches_brute_force")
    for _ in range(200):
        n = int(rng.integers(1, 7))
        ct, cm = rng.integers(0, 10, n).tolist(), rng.integers(0, 10, n).tolist()
        assert choose_boundary(ct, cm) == _brute_boundary(ct, cm)
    assert choose_boundary([1, 1, 9], [5, 5, 2]) == 1
    assert choose_boundary([9, 9], [1, 1]) == -1
    with pytest.raises(ValueError):
        choose_boundary([1], [1, 2])


def _clips(n_clips: int, n_frames: int, seed: int):
    g = np.random.default_rng(seed)
    rgb = g.integers(0, 256, (n_frames, 16, 16, 3), dtype=np.uint8)
    clips = []
    for _ in range(n_clips):
        drift = np.clip(rgb.astype(int) + g.integers(-3, 4, rgb.shape), 0, 255).astype(np.uint8)
        clips.append(SimpleNamespace(
            rgb=drift, semseg=g.integers(0, 5, (n_frames, 16, 16)).astype(np.uint8),
            depth=g.uniform(500, 5000, (n_frames, 16, 16)).astype(np.float32),
            normals=np.tile(np.array([0, 0, -1], np.float32), (n_frames, 16, 16, 1)),
            edges=g.integers(0, 2, (n_frames, 16, 16)).astype(np.uint8)))
    return clips


def test_calibration_scales_with_input_magnitude() -> None:
    base, subs = make_system(seeding.seed_for("test_calibration_scales_with_input_magnitude", bits=13), dtype=torch.float32)
    clips = _clips(2, 4, 1)
    ths = calibrate_thresholds(base, subs, clips, {BASE_TASK: 0.1, "depth": 0.2})
    frames = torch.stack([torch.from_numpy(c.rgb.transpose(0, 3, 1, 2)).float() / 255 for c in clips], 1)
    scale = site_input_scale(base, frames, BASE_TASK)
    assert ths[BASE_TASK] == pytest.approx([0.1 * s for s in scale])
    assert ths["normals"] == [0.0] * 3 and all(t > 0 for t in ths["depth"])


def test_measured_densities_fall_with_threshold_and_boundary_is_optimal() -> None:
    base, subs = make_system(3, dtype=torch.float32)
    clips = _clips(1, 4, 2)
    results = {}
    for rel in (0.05, 0.5):
        ths = calibrate_thresholds(base, subs, clips, dict.fromkeys([BASE_TASK, *subs], rel))
        results[rel], _ = measure_densities(base, subs, clips, ths, keyframe_interval=2)
    for task in subs:
        lo, hi = results[0.05][task], results[0.5][task]
        for a, b in itertools.chain(zip(lo.s_a1, hi.s_a1, strict=True),
                                    zip(lo.s_a2, hi.s_a2, strict=True)):
            assert 0 <= b <= a <= 1
        assert hi.boundary == _brute_boundary(hi.macs_task, hi.macs_temporal)
        assert all(0 < w < 1 for w in hi.s_w)


def test_configured_boundaries() -> None:
    from deltamtl.model.sharing.report import configured_boundaries

    assert configured_boundaries({"sharing": {"boundary": "auto"}}, 6) is None
    assert configured_boundaries({"sharing": {"boundary": [0, 5, -1]}}, 6) == {
        "depth": 0, "normals": 5, "edges": -1}
    with pytest.raises(ValueError, match="sharing.boundary"):
        configured_boundaries({"sharing": {"boundary": [0, 6, -1]}}, 6)
