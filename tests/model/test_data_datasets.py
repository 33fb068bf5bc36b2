"""SyntheticVideoDataset: sample dict contract, split disjointness, temporal pairs, caching."""

import numpy as np
import pytest
import torch
from deltamtl.model.data import (
    NUM_CLASSES,
    SyntheticVideoDataset,
    clip_seed,
    pick_partner,
    synthetic_clips,
)
from torch.utils.data import DataLoader

pytestmark = pytest.mark.data  # make test-data


@pytest.fixture(scope="module")
def ds():
    return SyntheticVideoDataset("train", n_clips=2, frames_per_clip=4, height=32, width=40, seed=0,
                                 temporal_offsets=(-2, -1, 1, 2))


def test_sample_contract(ds):
    assert len(ds) == 8
    s = ds[5]
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 32, 40)
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["semseg"].dtype == torch.int64 and s["semseg"].shape == (32, 40)
    assert int(s["semseg"].max()) < NUM_CLASSES
    assert s["depth"].dtype == torch.float32 and s["depth"].shape == (1, 32, 40)
    assert s["normals"].dtype == torch.float32 and s["normals"].shape == (3, 32, 40)
    assert s["edges"].dtype == torch.float32 and s["edges"].shape == (1, 32, 40)
    assert set(torch.unique(s["edges"]).tolist()) <= {0.0, 1.0}
    assert s["clip"] == 1 and s["frame"] == 1
    assert s["image_tau"].shape == (3, 32, 40) and s["image_tau"].dtype == torch.float32
    assert s["tau"] != 0 and 0 <= s["frame"] + s["tau"] < 4
    c = ds.clips[1]
    np.testing.assert_array_equal((s["image"] * 255).round().byte().permute(1, 2, 0).numpy(), c.rgb[1])
    np.testing.assert_array_equal(s["image_tau"].permute(1, 2, 0).mul(255).round().byte().numpy(),
                                  c.rgb[1 + s["tau"]])


def test_batches_collate(ds):
    b = next(iter(DataLoader(ds, batch_size=4, shuffle=True)))
    assert b["image"].shape == (4, 3, 32, 40) and b["tau"].shape == (4,)


def test_tau_distribution(ds):
    torch.manual_seed(0)
    taus = [ds[1]["tau"] for _ in range(200)]  # frame 1 of clip 0: t-2 reflects to t+2
    assert set(taus) <= {-1, 1, 2} and len(set(taus)) == 3


def test_pick_partner():
    assert pick_partner(0, -2, 5) == 2
    assert pick_partner(4, 3, 5) == 1
    assert pick_partner(0, 0, 5) == 1 and pick_partner(4, 0, 5) == 3
    assert pick_partner(0, 7, 3) == 2  # reflected out of range too: clamped
    assert pick_partner(0, 1, 1) == 0  # unavoidable


def test_splits_disjoint():
    tr = {clip_seed("train", 0, i) for i in range(1000)}
    va = {clip_seed("val", 0, i) for i in range(1000)}
    tr1 = {clip_seed("train", 1, i) for i in range(1000)}
    assert not (tr & va) and not (tr & tr1)
    with pytest.raises(ValueError):
        clip_seed("nope", 0, 0)
    a = synthetic_clips("train", 1, 2, 16, 16)
    b = synthetic_clips("val", 1, 2, 16, 16)
    assert not np.array_equal(a[0].rgb, b[0].rgb)


def test_no_offsets_no_tau():
    d = SyntheticVideoDataset("val", 1, 2, 16, 16)
    assert "image_tau" not in d[0] and "tau" not in d[0]
    assert d[-1]["frame"] == 1
    with pytest.raises(IndexError):
        d[2]


def test_disk_cache(tmp_path):
    a = SyntheticVideoDataset("test", 1, 2, 16, 16, seed=7, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    from deltamtl.model.data.datasets import _MEM_CACHE, _load_npz

    c = _load_npz(files[0])
    np.testing.assert_array_equal(c.depth, a.clips[0].depth)
    assert c.meta["cuts"] == a.clips[0].meta["cuts"]
    np.testing.assert_array_equal(c.meta["poses_c2w"], a.clips[0].meta["poses_c2w"])
    _MEM_CACHE.clear()
    b = SyntheticVideoDataset("test", 1, 2, 16, 16, seed=7, cache_dir=tmp_path)
    np.testing.assert_array_equal(b.clips[0].rgb, a.clips[0].rgb)


def test_cli_bench_preview_export(tmp_path, capsys):
    import json

    from deltamtl.model.data import NYUDDataset
    from deltamtl.model.data.cli import main

    assert main(["bench", "--sizes", "16", "--frames", "2", "--clips", "1"]) == 0
    assert "16x16" in json.loads(capsys.readouterr().out)
    assert main(["preview", "--out", str(tmp_path / "p.png"), "--size", "16", "--frames", "2"]) == 0
    assert (tmp_path / "p.png").is_file()
    assert main(["export", "--root", str(tmp_path / "nyud"), "--split", "val", "--clips", "2",
                 "--frames", "2", "--size", "16"]) == 0
    ds = NYUDDataset(tmp_path / "nyud", "val")
    assert len(ds) == 4 and ds[3]["image"].shape == (3, 16, 16)
