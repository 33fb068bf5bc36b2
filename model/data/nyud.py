"""NYUD-v2 in the multi-task layout of the MTL literature (ASTMT / MTI-Net / ATRC / InvPT).

Layout under `root` (ids are the lines of the split file)::

    images/<id>.jpg|.png            RGB
    segmentation/<id>.png           uint8, 0 = void, 1..40 = classes  -> semseg = v - 1, 0 -> 255
    depth/<id>.npy                  float metres (0 = invalid)         -> mm
       or depth/<id>.png            uint16 millimetres
    normals/<id>.npy                float (H,W,3) in [-1, 1]
       or normals/<id>.png          uint8 (H,W,3): n = 2 v / 255 - 1
    edge/<id>.npy|.png              {0,1} (png: > 0)
    gt_sets/train.txt, gt_sets/val.txt
    video/<clip>/<frame:06d>.png    video clips as frame folders (RGB only)
    video/<clip>.txt, .json         (our synthetic clips) ordered frame ids, clip meta

Our writer (:func:`save_clip_nyud`) stores lossless files: PNG images, depth as float64
metres in .npy (float32 mm -> float64 m -> float32 mm is exact), normals and edges as .npy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from deltamtl.model.tasks import TASKS
from torch.utils.data import Dataset

from .io_utils import (
    DataFormatError,
    check_shape,
    find_file,
    read_image_rgb,
    read_label_png,
    read_npy,
    read_png_any,
    read_split,
    require_dir,
    to_sample,
)

# NYUD-v2 annotates every task of the model
NYUD_TASKS = TASKS
_FOLDERS = {"image": "images", "semseg": "segmentation", "depth": "depth", "normals": "normals",
            "edges": "edge"}
_EXTS = {"image": (".jpg", ".png", ".jpeg"), "semseg": (".png",), "depth": (".npy", ".png"),
         "normals": (".npy", ".png"), "edges": (".npy", ".png")}


def _read_task(task: str, path: Path, hw: tuple[int, int]) -> np.ndarray:
    field = f"NYUD {task}"
    if task == "semseg":
        v = check_shape(read_label_png(path, field), hw, path, field).astype(np.int64)
        if v.max(initial=0) > 255 or v.min(initial=0) < 0:
            raise DataFormatError(f"{field}: {path} has labels outside [0, 255]")
        out = np.where(v == 0, 255, v - 1)
        return out.astype(np.uint8)
    if task == "depth":
        if path.suffix == ".npy":
            d = read_npy(path, field)
            d = check_shape(d, hw, path, field)
            if not np.issubdtype(d.dtype, np.floating):
                raise DataFormatError(f"{field}: {path} must be float metres, got {d.dtype}")
            mm = np.asarray(d, np.float64) * 1000.0
        else:
            d = check_shape(read_png_any(path, field), hw, path, field)
            if d.dtype not in (np.uint16, np.int32, np.uint8):
                raise DataFormatError(f"{field}: {path} must be a uint16 millimetre PNG, got {d.dtype}")
            mm = d.astype(np.float64)
        mm = np.where(np.isfinite(mm) & (mm > 0), mm, 0.0)
        return mm.astype(np.float32)
    if task == "normals":
        if path.suffix == ".npy":
            n = read_npy(path, field)
            if not np.issubdtype(n.dtype, np.floating):
                raise DataFormatError(f"{field}: {path} must be float in [-1, 1], got {n.dtype}")
            n = np.asarray(n, np.float32)
        else:
            n = read_png_any(path, field)
            if n.dtype != np.uint8:
                raise DataFormatError(f"{field}: {path} must be an 8-bit RGB PNG, got {n.dtype}")
            n = 2.0 * n.astype(np.float32) / 255.0 - 1.0
        n = check_shape(n, (*hw, 3), path, field)
        return np.nan_to_num(n.astype(np.float32))
    if task == "edges":
        e = read_npy(path, field) if path.suffix == ".npy" else read_png_any(path, field)
        e = check_shape(e, hw, path, field)
        return (np.asarray(e) > (0.5 if np.issubdtype(e.dtype, np.floating) else 0)).astype(np.uint8)
    raise ValueError(f"unknown NYUD task {task!r}")


class NYUDDataset(Dataset):
    """NYUD-v2 multi-task data set; sample dict as SyntheticVideoDataset (+ "name", "index").

    split: a gt_sets/<split>.txt name, or "video/<clip>" for a clip written by save_clip_nyud.
    tasks: subset of ("semseg", "depth", "normals", "edges").
    Missing folders or files listed in the split raise FileNotFoundError at construction;
    wrong shapes or dtypes raise DataFormatError when the item is read; both name the file.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", tasks=NYUD_TASKS):
        self.root = Path(root)
        require_dir(self.root, "NYUD root")
        bad = [t for t in tasks if t not in NYUD_TASKS]
        if bad:
            raise ValueError(f"unknown NYUD tasks {bad}; choose from {NYUD_TASKS}")
        self.tasks = tuple(tasks)
        self.split = split
        if split.startswith("video/"):
            split_file = self.root / f"{split}.txt"
        else:
            split_file = self.root / "gt_sets" / f"{split}.txt"
        self.ids = read_split(split_file, f"NYUD split {split!r}")
        self.files: list[dict[str, Path]] = []
        dirs = {k: require_dir(self.root / _FOLDERS[k], f"NYUD {k}") for k in ("image", *self.tasks)}
        for i in self.ids:
            self.files.append({k: find_file(dirs[k], i, _EXTS[k], f"NYUD {k}") for k in dirs})

    def __len__(self) -> int:
        return len(self.ids)

    def read_numpy(self, index: int) -> dict[str, np.ndarray]:
        """Channel-last numpy arrays: rgb uint8, semseg uint8, depth mm, normals, edges uint8."""
        f = self.files[index]
        rgb = read_image_rgb(f["image"], "NYUD image")
        hw = rgb.shape[:2]
        out = {"rgb": rgb}
        for t in self.tasks:
            out[t] = _read_task(t, f[t], hw)
        return out

    def __getitem__(self, index: int) -> dict:
        a = self.read_numpy(index)
        s = to_sample(a["rgb"], a.get("semseg"), a.get("depth"), a.get("normals"), a.get("edges"))
        s["name"] = self.ids[index]
        s["index"] = index
        return s


# ---------------------------------------------------------------------------------------------
# writing our synthetic clips in this layout


def _write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path, format="PNG")


def save_clip_nyud(clip, root: str | os.PathLike, name: str, split: str | None = None) -> list[str]:
    """Write a synthetic Clip in the NYUD multi-task layout; returns the frame ids."""
    from .synthetic import meta_to_json

    root = Path(root)
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad clip name {name!r}")
    for k in _FOLDERS.values():
        (root / k).mkdir(parents=True, exist_ok=True)
    (root / "gt_sets").mkdir(parents=True, exist_ok=True)
    vdir = root / "video" / name
    vdir.mkdir(parents=True, exist_ok=True)
    if int(clip.semseg.max(initial=0)) > 254 and not np.all(clip.semseg[clip.semseg > 254] == 255):
        raise ValueError("semseg labels must be <= 254 (255 = ignore) to be stored NYUD-style")
    ids = []
    for t in range(clip.n_frames):
        i = f"{name}_{t:06d}"
        ids.append(i)
        _write_png(root / "images" / f"{i}.png", clip.rgb[t])
        _write_png(vdir / f"{t:06d}.png", clip.rgb[t])
        sem = clip.semseg[t].astype(np.int64)
        _write_png(root / "segmentation" / f"{i}.png", np.where(sem == 255, 0, sem + 1).astype(np.uint8))
        np.save(root / "depth" / f"{i}.npy", clip.depth[t].astype(np.float64) / 1000.0)
        np.save(root / "normals" / f"{i}.npy", clip.normals[t].astype(np.float32))
        np.save(root / "edge" / f"{i}.npy", clip.edges[t].astype(np.float32))
    (root / "video" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    (root / "video" / f"{name}.json").write_text(meta_to_json(clip.meta))
    if split:
        sf = root / "gt_sets" / f"{split}.txt"
        old = read_split(sf) if sf.exists() else []
        sf.write_text("\n".join(old + [i for i in ids if i not in set(old)]) + "\n")
    return ids


def load_clip_nyud(root: str | os.PathLike, name: str):
    """Read a clip written by save_clip_nyud back into a Clip (bit-identical arrays)."""
    from .synthetic import Clip, meta_from_json

    ds = NYUDDataset(root, f"video/{name}")
    frames = [ds.read_numpy(i) for i in range(len(ds))]
    meta_path = Path(root) / "video" / f"{name}.json"
    meta = meta_from_json(meta_path.read_text()) if meta_path.is_file() else {}
    return Clip(
        rgb=np.stack([f["rgb"] for f in frames]),
        semseg=np.stack([f["semseg"] for f in frames]),
        depth=np.stack([f["depth"] for f in frames]),
        normals=np.stack([f["normals"] for f in frames]),
        edges=np.stack([f["edges"] for f in frames]),
        meta=meta,
    )
