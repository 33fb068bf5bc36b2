"""Video input for the host pipeline: frame folders, GIFs and video files."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from deltamtl.model.data.io_utils import IMAGE_EXTS, DataFormatError, read_image_rgb


def _natural_key(p: Path):
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", p.name)]


def _to_rgb8(frame: np.ndarray, src: str, i: int) -> np.ndarray:
    a = np.asarray(frame)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise DataFormatError(f"video {src}: frame {i} has shape {a.shape}, expected (H,W,3)")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.shape[2] == 4:
        a = a[..., :3]
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.max(initial=0) <= 1.0:
            a = np.clip(np.rint(a * 255), 0, 255)
        elif a.dtype == np.uint16:
            a = a >> 8
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a)


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """Image files of a frame folder in natural order (frame2 before frame10)."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()),
                  key=_natural_key)


def read_video(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield frames (H,W,3) uint8 from a frame folder, a GIF, or a video file.

    Frame folder: every image file, natural sort order.  GIF and video files go through
    imageio (video containers need an imageio plugin such as imageio-ffmpeg or pyav; without
    one a clear error is raised).  Greyscale frames are replicated, alpha is dropped.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"video: {p} does not exist")
    if p.is_dir():
        files = list_frames(p)
        if not files:
            raise DataFormatError(f"video: frame folder {p} holds no image files ({', '.join(IMAGE_EXTS)})")
        return _iter_folder(files)
    return _iter_file(p)


def _iter_folder(files: list[Path]) -> Iterator[np.ndarray]:
    shape = None
    for i, f in enumerate(files):
        fr = read_image_rgb(f, f"video frame {i}")
        if shape is None:
            shape = fr.shape
        elif fr.shape != shape:
            raise DataFormatError(f"video: frame {f} has shape {fr.shape}, first frame had {shape}")
        yield fr


def _iter_file(p: Path) -> Iterator[np.ndarray]:
    import warnings

    import imageio.v3 as iio

    try:
        with open(p, "rb") as fh, warnings.catch_warnings():
            # imageio warns about legacy plugins while probing the format
            warnings.simplefilter("ignore", DeprecationWarning)
            first = True
            for i, fr in enumerate(iio.imiter(fh, extension=p.suffix.lower() or None)):
                first = False
                yield _to_rgb8(fr, str(p), i)
        if first:
            raise DataFormatError(f"video: {p} has no frames")
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(
            f"video: cannot decode {p} ({type(e).__name__}: {e}); for video containers install an "
            "imageio plugin (imageio-ffmpeg or av), or convert to a frame folder or GIF"
        ) from e
