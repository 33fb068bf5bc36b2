"""PyTorch data sets: the synthetic multi-task video, NYUD-v2 and PASCAL-Context loaders.

Every data set returns the same sample dict (channel-first torch tensors):
``image`` float32 [3,H,W] in [0,1]; ``semseg`` int64 [H,W] (255 = ignore); ``depth`` float32
[1,H,W] in mm (0 = invalid); ``normals`` float32 [3,H,W]; ``edges`` float32 [1,H,W] in {0,1};
plus per data set extras (see docs/data.md).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from deltamtl.contract.atomic import atomic_write_with
from torch.utils.data import Dataset

from .io_utils import to_sample
from .synthetic import RENDERER_VERSION, Clip, meta_from_json, meta_to_json, render_clip

SPLITS = {"train": 0, "val": 1, "test": 2}
_MAX_CLIPS = 1_000_000


def clip_seed(split: str, seed: int, index: int) -> int:
    """Seed of clip `index` of `split`; disjoint across splits (and across base seeds >= 0)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if not 0 <= index < _MAX_CLIPS:
        raise ValueError(f"clip index {index} out of range [0, {_MAX_CLIPS})")
    return ((int(seed) * _MAX_CLIPS) + int(index)) * 4 + SPLITS[split]


# ---------------------------------------------------------------------------------------------
# clip cache: in memory (per process, bounded) and optionally on disk as .npz

_MEM_CACHE: OrderedDict[tuple, Clip] = OrderedDict()
_MEM_CACHE_MAX_BYTES = int(os.environ.get("DELTAMTL_CLIP_CACHE_MB", "512")) * 2**20


def _clip_nbytes(c: Clip) -> int:
    return sum(a.nbytes for a in (c.rgb, c.semseg, c.depth, c.normals, c.edges))


def _cache_put(key: tuple, clip: Clip) -> None:
    _MEM_CACHE[key] = clip
    _MEM_CACHE.move_to_end(key)
    total = sum(_clip_nbytes(c) for c in _MEM_CACHE.values())
    while total > _MEM_CACHE_MAX_BYTES and len(_MEM_CACHE) > 1:
        _, old = _MEM_CACHE.popitem(last=False)
        total -= _clip_nbytes(old)


def _npz_path(cache_dir: Path, key: tuple) -> Path:
    h = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
    return cache_dir / f"clip_r{RENDERER_VERSION}_{h}.npz"


def _save_npz(path: Path, clip: Clip) -> None:
    # suffix .npz: np.savez appends it to any other name
    atomic_write_with(path, lambda tmp: np.savez(
        tmp,
        rgb=clip.rgb,
        semseg=clip.semseg,
        depth=clip.depth,
        normals=clip.normals,
        edges=clip.edges,
        meta=np.frombuffer(meta_to_json(clip.meta).encode(), np.uint8),
    ), suffix=".npz")


def _load_npz(path: Path) -> Clip:
    with np.load(path) as z:
        return Clip(
            z["rgb"], z["semseg"], z["depth"], z["normals"], z["edges"],
            meta_from_json(bytes(z["meta"]).decode()),
        )


def get_clip(seed: int, n_frames: int, height: int, width: int,
             cache_dir: str | os.PathLike | None = None, **render_kw) -> Clip:
    """render_clip with caching (memory, then `cache_dir` or $DELTAMTL_DATA_CACHE if set)."""
    key = (int(seed), int(n_frames), int(height), int(width), tuple(sorted(render_kw.items())),
           RENDERER_VERSION)
    if key in _MEM_CACHE:
        _MEM_CACHE.move_to_end(key)
        return _MEM_CACHE[key]
    cache_dir = cache_dir if cache_dir is not None else os.environ.get("DELTAMTL_DATA_CACHE")
    clip = None
    if cache_dir:
        path = _npz_path(Path(cache_dir), key)
        if path.exists():
            try:
                clip = _load_npz(path)
            except Exception:  # corrupt cache entry: re-render
                clip = None
    if clip is None:
        clip = render_clip(seed, n_frames, height, width, **render_kw)
        if cache_dir:
            _save_npz(_npz_path(Path(cache_dir), key), clip)
    _cache_put(key, clip)
    return clip


def _render_args(args):
    seed, n_frames, height, width, cache_dir = args
    return get_clip(seed, n_frames, height, width, cache_dir=cache_dir)


def synthetic_clips(split: str, n_clips: int, frames_per_clip: int, height: int = 64,
                    width: int = 64, seed: int = 0, *, workers: int = 0,
                    cache_dir: str | os.PathLike | None = None) -> list[Clip]:
    """The clips of a synthetic split (the same ones SyntheticVideoDataset uses)."""
    seeds = [clip_seed(split, seed, i) for i in range(n_clips)]
    args = [(s, frames_per_clip, height, width, cache_dir) for s in seeds]
    if workers and workers > 1 and n_clips > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers) as pool:
            clips = pool.map(_render_args, args)
        for a, c in zip(args, clips, strict=True):
            _cache_put((a[0], a[1], a[2], a[3], (), RENDERER_VERSION), c)
        return clips
    return [_render_args(a) for a in args]


# ---------------------------------------------------------------------------------------------
# sample conversion shared by all data sets




def pick_partner(t: int, tau: int, n_frames: int) -> int:
    """Frame index of the partner of frame t at offset tau: t + tau, else reflected (t - tau)
    if t + tau is outside the clip, else clamped to the clip; never t itself when n_frames > 1
    (tau = 0 or a clamp onto t gives a neighbour)."""
    if n_frames <= 1:
        return t
    u = t + tau
    if not 0 <= u < n_frames:
        u = t - tau
        if not 0 <= u < n_frames:  # out on both sides: clamp in the original direction
            u = min(max(t + tau, 0), n_frames - 1)
    if u == t:
        u = t + 1 if t + 1 < n_frames else t - 1
    return u


class SyntheticVideoDataset(Dataset):
    """Frames of procedurally rendered multi-task clips (see synthetic.render_clip).

    Item i is frame ``i % frames_per_clip`` of clip ``i // frames_per_clip``.  Clips are
    rendered once, at construction (cached in memory and, with `cache_dir` or
    $DELTAMTL_DATA_CACHE, as .npz).  "train", "val" and "test" use disjoint clip seeds.

    With `temporal_offsets`, each item also carries ``image_tau`` (the frame t + tau of the same
    clip, tau drawn uniformly from temporal_offsets with torch's RNG), ``tau`` (the offset
    actually used, after reflection/clamping at the clip ends) and ``same_shot`` (0 if a scene
    cut lies between the two frames).
    """

    def __init__(self, split: str, n_clips: int, frames_per_clip: int, height: int = 64,
                 width: int = 64, seed: int = 0, temporal_offsets: Sequence[int] = (), *,
                 workers: int = 0, cache_dir: str | os.PathLike | None = None):
        if n_clips < 1 or frames_per_clip < 1:
            raise ValueError(f"n_clips and frames_per_clip must be >= 1, got {n_clips}, {frames_per_clip}")
        self.split = split
        self.n_clips = int(n_clips)
        self.frames_per_clip = int(frames_per_clip)
        self.height = int(height)
        self.width = int(width)
        self.seed = int(seed)
        self.temporal_offsets = tuple(int(t) for t in temporal_offsets)
        self.clip_seeds = [clip_seed(split, seed, i) for i in range(n_clips)]
        self.clips: list[Clip] = synthetic_clips(split, n_clips, frames_per_clip, height, width, seed,
                                                 workers=workers, cache_dir=cache_dir)

    def __len__(self) -> int:
        return self.n_clips * self.frames_per_clip

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        ci, t = divmod(index, self.frames_per_clip)
        c = self.clips[ci]
        s = to_sample(c.rgb[t], c.semseg[t], c.depth[t], c.normals[t], c.edges[t])
        s["clip"] = ci
        s["frame"] = t
        if self.temporal_offsets:
            k = int(torch.randint(len(self.temporal_offsets), ()).item())
            u = pick_partner(t, self.temporal_offsets[k], self.frames_per_clip)
            s["image_tau"] = to_sample(c.rgb[u])["image"]
            s["tau"] = u - t
            shot = c.meta.get("shot")
            s["same_shot"] = int(shot is None or shot[u] == shot[t])
        return s


# Real-data loaders live in their own modules; re-exported here.
from .nyud import NYUDDataset  # noqa: E402
from .pascal import PascalContextDataset  # noqa: E402

__all__ = [
    "SyntheticVideoDataset",
    "NYUDDataset",
    "PascalContextDataset",
    "synthetic_clips",
    "clip_seed",
    "get_clip",
    "to_sample",
    "pick_partner",
]
