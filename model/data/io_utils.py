"""Small readers with error messages that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class DataFormatError(ValueError):
    """A data file is missing, unreadable, or has the wrong shape/dtype."""


IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm")


def require_dir(path: Path, field: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{field}: folder {path} does not exist")
    return path


def find_file(folder: Path, stem: str, exts: tuple[str, ...], field: str) -> Path:
    """folder/stem.<ext> for the first ext that exists; FileNotFoundError naming all tried."""
    for e in exts:
        p = folder / f"{stem}{e}"
        if p.is_file():
            return p
    tried = ", ".join(str(folder / f"{stem}{e}") for e in exts)
    raise FileNotFoundError(f"{field}: no file for id {stem!r} (tried {tried})")


def read_image_rgb(path: Path, field: str = "image") -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(f"{field}: cannot read image {path}: {e}") from e
    return arr


def read_label_png(path: Path, field: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise DataFormatError(
                    f"{field}: {path} must be a single-channel label PNG, got mode {im.mode}"
                )
            arr = np.asarray(im)
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(f"{field}: cannot read label image {path}: {e}") from e
    return arr


def read_png_any(path: Path, field: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(f"{field}: cannot read {path}: {e}") from e


def read_npy(path: Path, field: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(f"{field}: cannot read {path}: {e}") from e
    if not isinstance(arr, np.ndarray) or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ):
        raise DataFormatError(f"{field}: {path} must hold a numeric array, got {getattr(arr, 'dtype', type(arr))}")
    return arr


def check_shape(arr: np.ndarray, shape: tuple, path: Path, field: str) -> np.ndarray:
    """Check arr.shape == shape (None entries are free); squeeze a trailing/leading 1 for 2-D."""
    if len(shape) == 2 and arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[2]):
        arr = arr.reshape(arr.shape[:2] if arr.shape[2] == 1 else arr.shape[1:])
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape, strict=True))
    if not ok:
        raise DataFormatError(f"{field}: {path} has shape {arr.shape}, expected {shape}")
    return arr


def read_split(path: Path, field: str = "split") -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{field}: split file {path} does not exist")
    ids = [ln.strip() for ln in path.read_text().splitlines()]
    return [i for i in ids if i]


def to_sample(rgb: np.ndarray, semseg: np.ndarray | None = None, depth: np.ndarray | None = None,
              normals: np.ndarray | None = None, edges: np.ndarray | None = None) -> dict:
    """numpy channel-last arrays -> the sample dict of torch tensors (missing tasks omitted)."""
    out = {"image": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), np.float32) / 255.0)}
    if semseg is not None:
        out["semseg"] = torch.from_numpy(semseg.astype(np.int64))
    if depth is not None:
        out["depth"] = torch.from_numpy(np.ascontiguousarray(depth, np.float32)[None])
    if normals is not None:
        out["normals"] = torch.from_numpy(np.ascontiguousarray(normals.transpose(2, 0, 1), np.float32))
    if edges is not None:
        out["edges"] = torch.from_numpy(np.ascontiguousarray(edges, np.float32)[None])
    return out
