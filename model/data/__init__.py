"""Data sets: procedural multi-task indoor video (exact ground truth), NYUD-v2 and
PASCAL-Context loaders in their multi-task layouts (video input for the host pipeline is
:mod:`deltamtl.host.video`).

See docs/data.md.
"""

from .datasets import (
    NYUDDataset,
    PascalContextDataset,
    SyntheticVideoDataset,
    clip_seed,
    get_clip,
    pick_partner,
    synthetic_clips,
)
from .io_utils import DataFormatError
from .nyud import load_clip_nyud, save_clip_nyud
from .synthetic import (
    CLASS_NAMES,
    FPS,
    IGNORE_INDEX,
    NUM_CLASSES,
    TASKS,
    Clip,
    edges_from_geometry,
    render_clip,
)

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "IGNORE_INDEX",
    "TASKS",
    "FPS",
    "Clip",
    "render_clip",
    "save_clip_nyud",
    "load_clip_nyud",
    "edges_from_geometry",
    "SyntheticVideoDataset",
    "synthetic_clips",
    "clip_seed",
    "get_clip",
    "pick_partner",
    "NYUDDataset",
    "PascalContextDataset",
    "DataFormatError",
]
