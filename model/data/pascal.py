"""PASCAL-Context in the multi-task layout of the MTL literature (ASTMT / MTI-Net / ATRC / InvPT).

Layout under `root`::

    JPEGImages/<id>.jpg                         RGB
    semseg/VOC12/<id>.png or semseg/pascal-context/<id>.png
                                                uint8 labels 0..20 (0 = background), 255 = ignore
    human_parts/<id>.mat                        PASCAL-Part annotation ('anno' struct), or
    human_parts/<id>.png                        a ready label map (0 = background, 1..6, 255)
    sal_distill/<id>.png (or sal/<id>.png)      saliency, 0..255; target = v / 255 > 0.5
    normals_distill/<id>.png                    uint8 RGB; n = 2 v / 255 - 1
    pascal-context/trainval/<id>.mat            'LabelMap' (full PASCAL-Context labels);
                                                edges = thin(|Laplacian(LabelMap)| > 0)
    ImageSets/Context/train.txt, val.txt

Human parts from .mat: every object of class 15 (person) with part annotations contributes its
parts, mapped to 6 groups (head, torso, upper arms, lower arms + hands, upper legs, lower legs +
feet) as in the literature; an image without annotated persons gets all-255 (ignored), which
is equivalent to scoring parts only on images that contain persons.

Normals: the distilled normals are only meaningful on classes that also exist in NYUD; pass
`normals_valid_classes` (PASCAL-Context label ids) to zero the rest, as the literature does with
its class lists.  Without it every pixel is kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .io_utils import (
    DataFormatError,
    check_shape,
    find_file,
    read_image_rgb,
    read_label_png,
    read_png_any,
    read_split,
    require_dir,
    to_sample,
)

PASCAL_TASKS = ("semseg", "human_parts", "sal", "normals", "edges")
PASCAL_NUM_CLASSES = {"semseg": 21, "human_parts": 7}
PERSON_CLASS = 15

_HEAD = ("hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear", "rebrow", "reye")
# part name -> group id for 6 groups
HUMAN_PARTS_6 = {
    **{p: 1 for p in _HEAD},
    "neck": 2, "torso": 2,
    "luarm": 3, "ruarm": 3,
    "llarm": 4, "rlarm": 4, "lhand": 4, "rhand": 4,
    "luleg": 5, "ruleg": 5,
    "llleg": 6, "rlleg": 6, "lfoot": 6, "rfoot": 6,
}


def _loadmat(path: Path, field: str) -> dict:
    import scipy.io as sio

    try:
        return sio.loadmat(path)
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(f"{field}: cannot read MATLAB file {path}: {e}") from e


def edges_from_labelmap(labels: np.ndarray) -> np.ndarray:
    """Edges of a label map: thin(|4-neighbour Laplacian| > 0), border mirrored (uint8 {0,1})."""
    from scipy.ndimage import convolve
    from skimage.morphology import thin

    k = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64)
    lap = convolve(labels.astype(np.float64), k, mode="mirror")
    return thin(np.abs(lap) > 0).astype(np.uint8)


def read_human_parts_mat(path: Path, hw: tuple[int, int]) -> np.ndarray:
    field = "PASCAL human_parts"
    m = _loadmat(path, field)
    if "anno" not in m:
        raise DataFormatError(f"{field}: {path} has no 'anno' struct")
    try:
        objs = m["anno"][0][0][1][0]
        target = None
        for o in objs:
            cls = int(np.asarray(o[1]).ravel()[0])
            parts = o[3]
            if cls != PERSON_CLASS or np.size(parts) == 0:
                continue
            if target is None:
                target = np.zeros(hw, np.uint8)
            for part in np.asarray(parts).ravel():
                name = str(np.asarray(part[0]).ravel()[0])
                mask = np.asarray(part[1]).astype(bool)
                if mask.shape != hw:
                    raise DataFormatError(f"{field}: {path} part {name!r} mask shape {mask.shape} != {hw}")
                if name not in HUMAN_PARTS_6:
                    raise DataFormatError(f"{field}: {path} unknown part name {name!r}")
                target[mask] = HUMAN_PARTS_6[name]
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DataFormatError(f"{field}: {path} is not a PASCAL-Part 'anno' struct: {e}") from e
    return target if target is not None else np.full(hw, 255, np.uint8)


class PascalContextDataset(Dataset):
    """PASCAL-Context multi-task data set.

    Sample dict: "image" [3,H,W] float in [0,1]; "semseg" int64 [H,W]; "human_parts" int64
    [H,W]; "sal" float32 [1,H,W] {0,1}; "normals" float32 [3,H,W] (0 where invalid); "edges"
    float32 [1,H,W] {0,1}; "name" str; "index" int.  Only the requested tasks are loaded.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", tasks=PASCAL_TASKS, *,
                 normals_valid_classes: Iterable[int] | None = None):
        self.root = Path(root)
        require_dir(self.root, "PASCAL root")
        bad = [t for t in tasks if t not in PASCAL_TASKS]
        if bad:
            raise ValueError(f"unknown PASCAL-Context tasks {bad}; choose from {PASCAL_TASKS}")
        self.tasks = tuple(tasks)
        self.split = split
        self.normals_valid_classes = (
            None if normals_valid_classes is None else np.array(sorted(set(normals_valid_classes)))
        )
        self.ids = read_split(self.root / "ImageSets" / "Context" / f"{split}.txt",
                              f"PASCAL split {split!r}")
        img_dir = require_dir(self.root / "JPEGImages", "PASCAL image")
        ctx_dir = self.root / "pascal-context" / "trainval"
        need_ctx = "edges" in self.tasks or ("normals" in self.tasks and self.normals_valid_classes is not None)
        if need_ctx:
            require_dir(ctx_dir, "PASCAL edges (pascal-context/trainval)")
        if "semseg" in self.tasks:
            sdirs = [self.root / "semseg" / "VOC12", self.root / "semseg" / "pascal-context"]
            if not any(d.is_dir() for d in sdirs):
                raise FileNotFoundError(f"PASCAL semseg: neither {sdirs[0]} nor {sdirs[1]} exists")
        if "human_parts" in self.tasks:
            require_dir(self.root / "human_parts", "PASCAL human_parts")
        sal_dir = self.root / "sal_distill"
        if "sal" in self.tasks:
            if not sal_dir.is_dir():
                sal_dir = self.root / "sal"
            require_dir(sal_dir, "PASCAL sal (sal_distill/ or sal/)")
        if "normals" in self.tasks:
            require_dir(self.root / "normals_distill", "PASCAL normals (normals_distill/)")

        self.files: list[dict[str, Path]] = []
        for i in self.ids:
            f = {"image": find_file(img_dir, i, (".jpg", ".png", ".jpeg"), "PASCAL image")}
            if "semseg" in self.tasks:
                cands = [d / f"{i}.png" for d in sdirs if (d / f"{i}.png").is_file()]
                if not cands:
                    raise FileNotFoundError(
                        f"PASCAL semseg: no file for id {i!r} (tried {sdirs[0] / (i + '.png')}, "
                        f"{sdirs[1] / (i + '.png')})")
                f["semseg"] = cands[0]
            if "human_parts" in self.tasks:
                f["human_parts"] = find_file(self.root / "human_parts", i, (".mat", ".png"),
                                             "PASCAL human_parts")
            if "sal" in self.tasks:
                f["sal"] = find_file(sal_dir, i, (".png",), "PASCAL sal")
            if "normals" in self.tasks:
                f["normals"] = find_file(self.root / "normals_distill", i, (".png",), "PASCAL normals")
            if need_ctx:
                f["context"] = find_file(ctx_dir, i, (".mat",), "PASCAL edges (pascal-context LabelMap)")
            self.files.append(f)

    def __len__(self) -> int:
        return len(self.ids)

    def _labelmap(self, path: Path, hw) -> np.ndarray:
        field = "PASCAL edges (pascal-context LabelMap)"
        m = _loadmat(path, field)
        if "LabelMap" not in m:
            raise DataFormatError(f"{field}: {path} has no 'LabelMap'")
        return check_shape(np.asarray(m["LabelMap"]), hw, path, field)

    def read_numpy(self, index: int) -> dict[str, np.ndarray]:
        f = self.files[index]
        rgb = read_image_rgb(f["image"], "PASCAL image")
        hw = rgb.shape[:2]
        out: dict[str, np.ndarray] = {"rgb": rgb}
        lm = None
        if "context" in f:
            lm = self._labelmap(f["context"], hw)
        if "semseg" in self.tasks:
            out["semseg"] = check_shape(read_label_png(f["semseg"], "PASCAL semseg"), hw, f["semseg"],
                                        "PASCAL semseg").astype(np.uint8)
        if "human_parts" in self.tasks:
            p = f["human_parts"]
            if p.suffix == ".mat":
                out["human_parts"] = read_human_parts_mat(p, hw)
            else:
                out["human_parts"] = check_shape(read_label_png(p, "PASCAL human_parts"), hw, p,
                                                 "PASCAL human_parts").astype(np.uint8)
        if "sal" in self.tasks:
            s = read_png_any(f["sal"], "PASCAL sal")
            if s.ndim == 3:
                s = s[..., 0]
            s = check_shape(s, hw, f["sal"], "PASCAL sal")
            out["sal"] = (s.astype(np.float32) / 255.0 > 0.5).astype(np.uint8)
        if "normals" in self.tasks:
            n = read_png_any(f["normals"], "PASCAL normals")
            if n.dtype != np.uint8:
                raise DataFormatError(f"PASCAL normals: {f['normals']} must be 8-bit RGB, got {n.dtype}")
            n = check_shape(n, (*hw, 3), f["normals"], "PASCAL normals")
            n = 2.0 * n.astype(np.float32) / 255.0 - 1.0
            if self.normals_valid_classes is not None:
                n[~np.isin(lm, self.normals_valid_classes)] = 0.0
            out["normals"] = n
        if "edges" in self.tasks:
            out["edges"] = edges_from_labelmap(lm)
        return out

    def __getitem__(self, index: int) -> dict:
        a = self.read_numpy(index)
        s = to_sample(a["rgb"], a.get("semseg"), None, a.get("normals"), a.get("edges"))
        if "human_parts" in a:
            s["human_parts"] = torch.from_numpy(a["human_parts"].astype(np.int64))
        if "sal" in a:
            s["sal"] = torch.from_numpy(a["sal"].astype(np.float32)[None])
        s["name"] = self.ids[index]
        s["index"] = index
        return s
