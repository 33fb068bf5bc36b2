"""Texture bank for the synthetic renderer: real textures shipped with scikit-image plus a
few procedural ones, each stored as a mip pyramid and sampled bilinearly with wrap-around at a
per-pixel level of detail (so distant, grazing surfaces do not alias into flicker).

Grey textures are "detail" maps with zero mean and values roughly in [-1, 1]; they modulate a
surface's palette colour.  Colour textures ("pictures" hung on walls) are albedo maps in [0, 1].
Everything is built once per process (about 0.5 s) and is deterministic.
"""

from __future__ import annotations

import functools

import numpy as np

TEX_RES = 256

# name -> loader; grey textures used as surface detail
GREY_TEXTURES: tuple[str, ...] = (
    "flat",
    "brick",
    "grass",
    "gravel",
    "camera",
    "moon",
    "checker",
    "stripes",
    "wood",
    "noise",
)
# colour photographs for pictures on walls
COLOUR_TEXTURES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "coins")


def _resize(img: np.ndarray, res: int) -> np.ndarray:
    from skimage.transform import resize

    if img.ndim == 2:
        out = resize(img, (res, res), anti_aliasing=True, preserve_range=True)
    else:
        out = resize(img, (res, res, img.shape[2]), anti_aliasing=True, preserve_range=True)
    return out.astype(np.float32)


def _tileable_noise(rng: np.random.Generator, res: int, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(rng.standard_normal((res, res)), sigma, mode="wrap")
    return n.astype(np.float32)


def _load_grey(name: str) -> np.ndarray:
    rng = np.random.default_rng(12345 + len(name))
    r = TEX_RES
    yy, xx = np.mgrid[0:r, 0:r].astype(np.float32) / r
    if name == "flat":
        img = np.zeros((r, r), np.float32)
    elif name == "checker":
        img = (((np.floor(xx * 4) + np.floor(yy * 4)) % 2) * 2 - 1).astype(np.float32)
    elif name == "stripes":
        img = np.sin(2 * np.pi * 3 * xx).astype(np.float32)
    elif name == "wood":
        warp = _tileable_noise(rng, r, 12) * 8
        img = np.sin(2 * np.pi * (6 * yy + 0.15 * warp)).astype(np.float32)
        img += 0.3 * _tileable_noise(rng, r, 1.5) / 0.25
    elif name == "noise":
        img = _tileable_noise(rng, r, 4)
    else:
        from skimage import data

        src = getattr(data, name)()
        if src.ndim == 3:
            src = src.mean(axis=2)
        img = _resize(src.astype(np.float32), r)
    img = img - img.mean()
    s = img.std()
    if s > 0:
        img = np.clip(img / (2.5 * s), -1, 1)
    return img.astype(np.float32)


def _load_colour(name: str) -> np.ndarray:
    from skimage import data

    src = getattr(data, name)()
    if src.ndim == 2:
        src = np.stack([src] * 3, axis=-1)
    src = src[..., :3].astype(np.float32) / 255.0
    return np.clip(_resize(src, TEX_RES), 0, 1)


def _pyramid(img: np.ndarray) -> list[np.ndarray]:
    levels = [img]
    while levels[-1].shape[0] > 1:
        a = levels[-1]
        levels.append(0.25 * (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]))
    # each level as (res, res, C)
    return [lv if lv.ndim == 3 else lv[..., None] for lv in levels]


@functools.cache
def texture_bank() -> dict[str, list[np.ndarray]]:
    """name -> mip pyramid (list of float32 arrays (R, R, C), R = 256, 128, ..., 1)."""
    bank: dict[str, list[np.ndarray]] = {}
    for n in GREY_TEXTURES:
        bank[n] = _pyramid(_load_grey(n))
    for n in COLOUR_TEXTURES:
        bank[n] = _pyramid(_load_colour(n))
    return bank


def _bilinear(level: np.ndarray, u: np.ndarray, v: np.ndarray, wrap: bool) -> np.ndarray:
    r = level.shape[0]
    x = u * r - 0.5
    y = v * r - 0.5
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)
    if wrap:
        x1 = (x0 + 1) % r
        y1 = (y0 + 1) % r
        x0 %= r
        y0 %= r
    else:
        x1 = np.clip(x0 + 1, 0, r - 1)
        y1 = np.clip(y0 + 1, 0, r - 1)
        x0 = np.clip(x0, 0, r - 1)
        y0 = np.clip(y0, 0, r - 1)
    a = level[y0, x0] * (1 - fx) + level[y0, x1] * fx
    b = level[y1, x0] * (1 - fx) + level[y1, x1] * fx
    return a * (1 - fy) + b * fy


def sample(name: str, u: np.ndarray, v: np.ndarray, texels_per_pixel: np.ndarray,
           wrap: bool = True) -> np.ndarray:
    """Sample texture `name` at texture coordinates (u, v) (1.0 = one tile).

    texels_per_pixel: footprint of a pixel in level-0 texels; selects the mip level.
    Returns float32 (N, C).
    """
    pyr = texture_bank()[name]
    n = u.shape[0]
    c = pyr[0].shape[2]
    out = np.empty((n, c), np.float32)
    if n == 0:
        return out
    lod = np.log2(np.maximum(texels_per_pixel, 1.0))
    lvl = np.clip(np.rint(lod), 0, len(pyr) - 1).astype(np.int64)
    for L in np.flatnonzero(np.bincount(lvl)):
        m = lvl == L
        out[m] = _bilinear(pyr[L], u[m], v[m], wrap)
    return out
