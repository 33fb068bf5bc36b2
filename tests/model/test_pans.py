"""The handheld-pan footage (model/data/pans.py): deterministic, the right shape, and moving
the way a hand-held camera does (a little every frame, never a jump)."""

from __future__ import annotations

import numpy as np
import pytest
from deltamtl.model.data import pans

from tests.helpers.seeding import seed_for


@pytest.mark.parametrize("name", pans.PHOTOS)
def test_pan_is_deterministic_and_moves_smoothly(name: str) -> None:
    seed = seed_for(f"pan {name}")
    img = pans.photo(name)
    a = pans.handheld_pan(img, 12, 32, seed)
    assert a.shape == (12, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, pans.handheld_pan(img, 12, 32, seed)), "same seed, same frames"
    assert not np.array_equal(a, pans.handheld_pan(img, 12, 32, seed + 1)), "another seed, another pan"
    step = np.abs(np.diff(a.astype(np.int16), axis=0)).mean(axis=(1, 2, 3))
    assert (step > 0).all(), f"{name}: a frame repeated exactly (the camera froze): {step}"
    # a frame-to-frame change far below a cut to another image of the same photo
    cut = np.abs(a[0].astype(np.int16) - a[0, ::-1].astype(np.int16)).mean()
    assert step.max() < cut, (name, step.max(), cut)


def test_pan_of_a_flat_image_is_flat() -> None:
    """Interpolation and downscaling keep a constant image constant (no edge artefacts)."""
    img = np.full((300, 400, 3), 77, np.uint8)
    assert (pans.handheld_pan(img, 5, 16, seed_for("flat")) == 77).all()


def test_photo_pans_keep_each_photo_independent_of_the_list() -> None:
    seed = seed_for("photo list")
    both = pans.photo_pans(16, 4, seed, ("astronaut", "coffee"))
    first = pans.photo_pans(16, 4, seed, ("astronaut",))
    assert np.array_equal(both["astronaut"], first["astronaut"])


def test_gif_frames() -> None:
    frames = pans.gif_frames(24)
    assert frames.ndim == 4 and frames.shape[1:] == (24, 24, 3) and frames.dtype == np.uint8
    assert len(frames) > 1 and frames.std() > 0
