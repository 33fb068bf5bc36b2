"""Real footage for measuring reuse: still photos filmed by a virtual handheld camera, and
scikit-image's animated GIF.

The synthetic video (model/data/synthetic.py) moves a few textured primitives in front of a
slow camera; most of its pixels repeat from frame to frame, which flatters temporal reuse.
Real footage is busier: every pixel of a photo carries texture, and a hand-held camera
moves the whole frame by a fraction of a pixel to a few pixels per frame and shakes. This
module films scikit-image's photos that way:

* a square window (a fraction of the photo's short side) glides from one point of the photo
  to another along a smooth (cosine-eased) path, with a slow zoom drift;
* a shake is added on top: an AR(1) process per axis (each frame keeps ``shake_keep`` of the
  previous offset plus fresh Gaussian noise), a few tenths of an output pixel;
* the window is resampled to ``size`` x ``size`` with bilinear interpolation after the photo
  was downscaled once (box filter) to about the window's scale, so fine texture is averaged
  the way a camera sensor would, not aliased.

Every clip is a pure function of (photo, size, frames, seed): the same arguments give the
same uint8 frames on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# scikit-image's colour photos that ship inside the package (no download needed)
PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket")
GIF_NAME = "no_time_for_that_tiny.gif"


@dataclass(frozen=True)
class PanSettings:
    """How the virtual camera moves (lengths in output pixels per frame unless stated)."""

    window: tuple[float, float] = (0.45, 0.7)  # window side as a fraction of the short side
    speed: tuple[float, float] = (0.5, 1.5)  # mean glide speed range, output pixels / frame
    zoom_drift: float = 0.04  # largest relative change of the window side over the clip
    shake_px: float = 0.35  # standard deviation of the shake's innovations, output pixels
    shake_keep: float = 0.6  # AR(1) coefficient of the shake (0: white, ->1: slow wobble)


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as uint8 [H, W, 3]."""
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}: choose from {', '.join(PHOTOS)}")
    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def _box_downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` x ``factor`` blocks (a sensor's integration), float32 result."""
    if factor <= 1:
        return img.astype(np.float32)
    h, w = (img.shape[0] // factor) * factor, (img.shape[1] // factor) * factor
    blocks = img[:h, :w].astype(np.float32).reshape(h // factor, factor, w // factor, factor, -1)
    return blocks.mean(axis=(1, 3))


def _bilinear_crop(img: np.ndarray, cy: float, cx: float, side: float, size: int) -> np.ndarray:
    """Sample a ``side``-pixel square centred at (cy, cx) on a ``size`` grid, bilinearly."""
    step = side / size
    # pixel centres of the output grid, in source coordinates
    ys = cy + (np.arange(size, dtype=np.float64) - (size - 1) / 2) * step
    xs = cx + (np.arange(size, dtype=np.float64) - (size - 1) / 2) * step
    ys = np.clip(ys, 0, img.shape[0] - 1.000001)
    xs = np.clip(xs, 0, img.shape[1] - 1.000001)
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    a = img[y0][:, x0]
    b = img[y0][:, x0 + 1]
    c = img[y0 + 1][:, x0]
    d = img[y0 + 1][:, x0 + 1]
    top = a + (b - a) * fx
    bottom = c + (d - c) * fx
    return top + (bottom - top) * fy


def handheld_pan(image: np.ndarray, frames: int, size: int, seed: int,
                 settings: PanSettings = PanSettings()) -> np.ndarray:
    """``frames`` uint8 [size, size, 3] frames of ``image`` filmed by a moving, shaking
    window (module docstring). Deterministic in ``seed``."""
    if frames < 1 or size < 2:
        raise ValueError(f"need frames >= 1 and size >= 2, got {frames}, {size}")
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got {img.shape}")
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    side0 = rng.uniform(*settings.window) * min(h, w)
    zoom_end = 1.0 + rng.uniform(-settings.zoom_drift, settings.zoom_drift)
    # the photo downscaled once so the window's resampling is close to 1:1 (no aliasing)
    factor = max(1, int(side0 * min(1.0, zoom_end) // size))
    src = _box_downscale(img, factor)
    sh, sw = src.shape[:2]
    side0 /= factor
    side_max = side0 * max(1.0, zoom_end)
    # glide: a straight path between two points, length set by the speed in output pixels
    speed = rng.uniform(*settings.speed) * side0 / size  # source pixels per frame
    length = speed * max(frames - 1, 1)
    margin = side_max / 2 + 1
    room_y, room_x = sh - 2 * margin, sw - 2 * margin
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = length * np.sin(angle), length * np.cos(angle)
    # keep the path inside the photo: shorten it where the photo is too small
    scale = min(1.0, room_y / (abs(dy) + 1e-9), room_x / (abs(dx) + 1e-9))
    dy, dx = dy * scale, dx * scale
    y_start = margin + rng.uniform(0, max(room_y - abs(dy), 0)) + (abs(dy) if dy < 0 else 0)
    x_start = margin + rng.uniform(0, max(room_x - abs(dx), 0)) + (abs(dx) if dx < 0 else 0)
    # shake: AR(1) per axis, in source pixels
    shake = np.zeros((frames, 2))
    innov = rng.normal(0.0, settings.shake_px * side0 / size, size=(frames, 2))
    for t in range(1, frames):
        shake[t] = settings.shake_keep * shake[t - 1] + innov[t]
    out = np.empty((frames, size, size, 3), np.uint8)
    for t in range(frames):
        u = t / max(frames - 1, 1)
        ease = 0.5 - 0.5 * np.cos(np.pi * u)  # starts and stops gently, like a hand
        side = side0 * (1.0 + (zoom_end - 1.0) * ease)
        cy = y_start + dy * ease + shake[t, 0]
        cx = x_start + dx * ease + shake[t, 1]
        crop = _bilinear_crop(src, cy, cx, side, size)
        out[t] = np.clip(np.rint(crop), 0, 255).astype(np.uint8)
    return out


def photo_pans(size: int, frames: int, seed: int, names: Sequence[str] = PHOTOS,
               settings: PanSettings = PanSettings()) -> dict[str, np.ndarray]:
    """One handheld pan per photo: {photo name: uint8 [frames, size, size, 3]}; each photo
    gets its own seed drawn from ``seed`` so adding a photo leaves the others unchanged."""
    return {name: handheld_pan(photo(name), frames, size,
                               int(np.random.SeedSequence([seed, k]).generate_state(1)[0]), settings)
            for k, name in enumerate(names)}


def gif_path() -> Path:
    """scikit-image's small animated GIF (shipped with the package)."""
    import skimage

    return Path(skimage.__file__).resolve().parent / "data" / GIF_NAME


def gif_frames(size: int, path: Path | None = None) -> np.ndarray:
    """Every frame of the GIF, centre-cropped to a square and resized: uint8 [T, size, size, 3]."""
    from PIL import Image, ImageSequence

    path = path or gif_path()
    out = []
    with Image.open(path) as im:
        for fr in ImageSequence.Iterator(im):
            rgb = fr.convert("RGB")
            w, h = rgb.size
            s = min(w, h)
            box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
            out.append(np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR, box=box)))
    if not out:
        raise ValueError(f"{path}: no frames")
    return np.stack(out).astype(np.uint8)
