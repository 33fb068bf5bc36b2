"""NYUD-v2 / PASCAL-Context loaders on tiny fixtures in their layouts, and the video reader."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from deltamtl.host.video import read_video
from deltamtl.model.data import (
    DataFormatError,
    NYUDDataset,
    PascalContextDataset,
    load_clip_nyud,
    render_clip,
    save_clip_nyud,
)
from deltamtl.model.data.io_utils import to_sample
from deltamtl.model.data.pascal import edges_from_labelmap
from PIL import Image

pytestmark = pytest.mark.data  # make test-data


def _png(path: Path, arr) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr)).save(path)


# ------------------------------------------------------------------------------------- NYUD
@pytest.fixture(scope="module")
def clip():
    return render_clip(8, 3, 24, 32, scene_cut=False)


def test_nyud_clip_round_trip(tmp_path, clip):
    ids = save_clip_nyud(clip, tmp_path, "seq0", split="train")
    assert ids == [f"seq0_{t:06d}" for t in range(3)]
    back = load_clip_nyud(tmp_path, "seq0")
    for k in ("rgb", "semseg", "depth", "normals", "edges"):
        a, b = getattr(clip, k), getattr(back, k)
        assert a.dtype == b.dtype and a.shape == b.shape, k
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert back.meta["seed"] == 8 and back.meta["cuts"] == clip.meta["cuts"]
    np.testing.assert_array_equal(back.meta["poses_c2w"], clip.meta["poses_c2w"])
    # the data set's samples equal those built from the in-memory clip
    ds = NYUDDataset(tmp_path, "train")
    assert len(ds) == 3
    s = ds[1]
    ref = to_sample(clip.rgb[1], clip.semseg[1], clip.depth[1], clip.normals[1], clip.edges[1])
    for k, v in ref.items():
        assert s[k].dtype == v.dtype and torch.equal(s[k], v), k
    assert s["name"] == "seq0_000001"
    # the raw video is also there as a frame folder
    frames = list(read_video(tmp_path / "video" / "seq0"))
    np.testing.assert_array_equal(np.stack(frames), clip.rgb)
    # a second clip appends to the split without duplicates
    save_clip_nyud(clip, tmp_path, "seq1", split="train")
    save_clip_nyud(clip, tmp_path, "seq1", split="train")
    assert len(NYUDDataset(tmp_path, "train")) == 6


def _nyud_fixture(root: Path, depth_png=False, normals_png=False, edge_png=False):
    rng = np.random.default_rng(0)
    H, W = 6, 8
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    _png(root / "images" / "0001.jpg", img)  # jpg like the real data (lossy)
    seg = rng.integers(0, 41, (H, W), dtype=np.uint8)
    seg[0, 0] = 0
    _png(root / "segmentation" / "0001.png", seg)
    depth_m = rng.uniform(0.5, 9.0, (H, W)).astype(np.float32)
    depth_m[1, 1] = 0
    (root / "depth").mkdir(parents=True, exist_ok=True)
    if depth_png:
        _png(root / "depth" / "0001.png", np.rint(depth_m * 1000).astype(np.uint16))
    else:
        np.save(root / "depth" / "0001.npy", depth_m)
    n = rng.normal(size=(H, W, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    (root / "normals").mkdir(parents=True, exist_ok=True)
    if normals_png:
        _png(root / "normals" / "0001.png", np.rint((n + 1) * 127.5).astype(np.uint8))
    else:
        np.save(root / "normals" / "0001.npy", n)
    e = (rng.uniform(size=(H, W)) < 0.2).astype(np.float32)
    (root / "edge").mkdir(parents=True, exist_ok=True)
    if edge_png:
        _png(root / "edge" / "0001.png", (e * 255).astype(np.uint8))
    else:
        np.save(root / "edge" / "0001.npy", e)
    (root / "gt_sets").mkdir(parents=True, exist_ok=True)
    (root / "gt_sets" / "val.txt").write_text("0001\n")
    return dict(img=img, seg=seg, depth_m=depth_m, n=n, e=e)


@pytest.mark.parametrize("pngs", [False, True])
def test_nyud_literature_format(tmp_path, pngs):
    f = _nyud_fixture(tmp_path, depth_png=pngs, normals_png=pngs, edge_png=pngs)
    s = NYUDDataset(tmp_path, "val")[0]
    assert s["image"].shape == (3, 6, 8) and s["image"].dtype == torch.float32
    seg = s["semseg"].numpy()
    assert seg.dtype == np.int64
    assert seg[0, 0] == 255  # 0 = void -> ignore
    np.testing.assert_array_equal(seg[f["seg"] > 0], f["seg"][f["seg"] > 0].astype(int) - 1)
    d = s["depth"][0].numpy()
    assert d[1, 1] == 0
    np.testing.assert_allclose(d, f["depth_m"] * 1000, atol=0.5 if pngs else 1e-3)
    np.testing.assert_allclose(s["normals"].permute(1, 2, 0).numpy(), f["n"], atol=0.01 if pngs else 0)
    np.testing.assert_array_equal(s["edges"][0].numpy(), f["e"])


def test_nyud_task_subset(tmp_path):
    _nyud_fixture(tmp_path)
    s = NYUDDataset(tmp_path, "val", tasks=("depth",))[0]
    assert set(s) == {"image", "depth", "name", "index"}
    with pytest.raises(ValueError, match="unknown NYUD tasks"):
        NYUDDataset(tmp_path, "val", tasks=("sal",))


def test_nyud_errors_name_file_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match="NYUD root"):
        NYUDDataset(tmp_path / "nope", "val")
    _nyud_fixture(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"train\.txt"):
        NYUDDataset(tmp_path, "train")
    # listed id without a file
    (tmp_path / "gt_sets" / "val.txt").write_text("0001\n0002\n")
    with pytest.raises(FileNotFoundError, match=r"NYUD image.*0002"):
        NYUDDataset(tmp_path, "val")
    (tmp_path / "gt_sets" / "val.txt").write_text("0001\n")
    # wrong shape
    np.save(tmp_path / "depth" / "0001.npy", np.ones((5, 8), np.float32))
    with pytest.raises(DataFormatError, match=r"NYUD depth.*0001\.npy.*shape"):
        NYUDDataset(tmp_path, "val")[0]
    # wrong dtype
    np.save(tmp_path / "depth" / "0001.npy", np.ones((6, 8), np.int32))
    with pytest.raises(DataFormatError, match=r"NYUD depth.*float"):
        NYUDDataset(tmp_path, "val")[0]
    np.save(tmp_path / "depth" / "0001.npy", np.ones((6, 8), np.float32))
    # normals without 3 channels
    np.save(tmp_path / "normals" / "0001.npy", np.ones((6, 8), np.float32))
    with pytest.raises(DataFormatError, match=r"NYUD normals.*0001\.npy"):
        NYUDDataset(tmp_path, "val")[0]
    np.save(tmp_path / "normals" / "0001.npy", np.ones((6, 8, 3), np.float32))
    # an RGB segmentation PNG
    _png(tmp_path / "segmentation" / "0001.png", np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(DataFormatError, match=r"NYUD semseg.*single-channel"):
        NYUDDataset(tmp_path, "val")[0]
    _png(tmp_path / "segmentation" / "0001.png", np.ones((6, 8), np.uint8))
    # a missing task folder
    import shutil

    shutil.rmtree(tmp_path / "edge")
    with pytest.raises(FileNotFoundError, match=r"NYUD edges.*edge"):
        NYUDDataset(tmp_path, "val")
    # an unreadable file
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "0001.npy").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match=r"NYUD edges.*0001\.npy"):
        NYUDDataset(tmp_path, "val")[0]


# ------------------------------------------------------------------------------------- PASCAL
def _anno(objects):
    """A PASCAL-Part 'anno' struct as scipy.io.savemat writes MATLAB structs."""
    objs = np.zeros((1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"),
                                              ("parts", "O")])
    for j, (cls, mask, parts) in enumerate(objects):
        if parts:
            pa = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
            for k, (name, pm) in enumerate(parts):
                pa[0, k] = (name, pm.astype(np.uint8))
        else:
            pa = np.zeros((0, 0))
        objs[0, j] = ("obj", np.array([[cls]], np.uint8), mask.astype(np.uint8), pa)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = ("img", objs)
    return {"anno": anno}


def _pascal_fixture(root: Path):
    import scipy.io as sio

    H, W = 10, 12
    rng = np.random.default_rng(1)
    _png(root / "JPEGImages" / "2008_000001.jpg", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    seg = rng.integers(0, 21, (H, W), dtype=np.uint8)
    seg[0, :3] = 255
    _png(root / "semseg" / "pascal-context" / "2008_000001.png", seg)
    lm = np.zeros((H, W), np.uint16)
    lm[:, 6:] = 284  # person
    lm[2:5, 1:4] = 59
    (root / "pascal-context" / "trainval").mkdir(parents=True)
    sio.savemat(root / "pascal-context" / "trainval" / "2008_000001.mat", {"LabelMap": lm})
    person = np.zeros((H, W), bool)
    person[:, 6:] = True
    head = np.zeros((H, W), bool)
    head[0:3, 7:10] = True
    lhand = np.zeros((H, W), bool)
    lhand[5:7, 6:8] = True
    rfoot = np.zeros((H, W), bool)
    rfoot[8:, 9:] = True
    (root / "human_parts").mkdir()
    sio.savemat(root / "human_parts" / "2008_000001.mat",
                _anno([(7, np.ones((H, W), bool), []),
                       (15, person, [("head", head), ("lhand", lhand), ("rfoot", rfoot)])]))
    sal = np.zeros((H, W), np.uint8)
    sal[:, 6:] = 200
    sal[0, 0] = 100
    _png(root / "sal_distill" / "2008_000001.png", sal)
    nrm = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    _png(root / "normals_distill" / "2008_000001.png", nrm)
    (root / "ImageSets" / "Context").mkdir(parents=True)
    (root / "ImageSets" / "Context" / "train.txt").write_text("2008_000001\n")
    return dict(seg=seg, lm=lm, head=head, lhand=lhand, rfoot=rfoot, person=person, nrm=nrm)


def test_pascal_fixture_round_trip(tmp_path):
    f = _pascal_fixture(tmp_path)
    ds = PascalContextDataset(tmp_path, "train")
    assert len(ds) == 1
    s = ds[0]
    assert s["image"].shape == (3, 10, 12)
    np.testing.assert_array_equal(s["semseg"].numpy(), f["seg"])
    hp = s["human_parts"].numpy()
    assert hp.dtype == np.int64
    assert np.all(hp[f["head"]] == 1) and np.all(hp[f["lhand"]] == 4) and np.all(hp[f["rfoot"]] == 6)
    other = ~(f["head"] | f["lhand"] | f["rfoot"])
    assert np.all(hp[other] == 0)
    sal = s["sal"][0].numpy()
    assert sal.dtype == np.float32 and sal[:, 6:].all() and sal[:, :6].sum() == 0  # 100/255 < 0.5
    n = s["normals"].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(n, 2 * f["nrm"].astype(float) / 255.0 - 1, atol=1e-6)
    e = s["edges"][0].numpy()
    from scipy.ndimage import laplace
    from skimage.morphology import thin

    np.testing.assert_array_equal(e, thin(np.abs(laplace(f["lm"].astype(float), mode="mirror")) > 0))
    assert e[:, 5:7].any() and e.sum() > 0
    np.testing.assert_array_equal(edges_from_labelmap(f["lm"]), e)


def test_pascal_normals_masked_and_no_person(tmp_path):
    import scipy.io as sio

    f = _pascal_fixture(tmp_path)
    s = PascalContextDataset(tmp_path, "train", tasks=("normals",), normals_valid_classes=[59])[0]
    n = s["normals"].permute(1, 2, 0).numpy()
    assert np.all(n[f["lm"] != 59] == 0) and np.any(n[f["lm"] == 59] != 0)
    assert set(s) == {"image", "normals", "name", "index"}
    sio.savemat(tmp_path / "human_parts" / "2008_000001.mat",
                _anno([(7, np.ones((10, 12), bool), [])]))
    hp = PascalContextDataset(tmp_path, "train", tasks=("human_parts",))[0]["human_parts"]
    assert torch.all(hp == 255)


def test_pascal_errors(tmp_path):
    _pascal_fixture(tmp_path)
    with pytest.raises(ValueError, match="unknown PASCAL"):
        PascalContextDataset(tmp_path, "train", tasks=("depth",))
    os.remove(tmp_path / "sal_distill" / "2008_000001.png")
    with pytest.raises(FileNotFoundError, match=r"PASCAL sal.*2008_000001"):
        PascalContextDataset(tmp_path, "train")
    import scipy.io as sio

    sio.savemat(tmp_path / "pascal-context" / "trainval" / "2008_000001.mat", {"Other": np.zeros((2, 2))})
    with pytest.raises(DataFormatError, match="LabelMap"):
        PascalContextDataset(tmp_path, "train", tasks=("edges",))[0]
    sio.savemat(tmp_path / "human_parts" / "2008_000001.mat", {"x": 1})
    with pytest.raises(DataFormatError, match=r"human_parts.*anno"):
        PascalContextDataset(tmp_path, "train", tasks=("human_parts",))[0]


# ------------------------------------------------------------------------------------- video
def test_read_gif_from_skimage():
    import skimage

    gif = Path(skimage.__file__).parent / "data" / "no_time_for_that_tiny.gif"
    frames = list(read_video(gif))
    assert len(frames) > 10
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
    assert len({f.shape for f in frames}) == 1
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])


def test_read_frame_folder_natural_order(tmp_path):
    for i in (1, 2, 10):
        _png(tmp_path / f"frame{i}.png", np.full((4, 5), i, np.uint8))  # greyscale
    (tmp_path / "notes.txt").write_text("x")
    frames = list(read_video(tmp_path))
    assert [int(f[0, 0, 0]) for f in frames] == [1, 2, 10]
    assert frames[0].shape == (4, 5, 3)
    _png(tmp_path / "frame11.png", np.zeros((3, 5), np.uint8))
    with pytest.raises(DataFormatError, match="frame11"):
        list(read_video(tmp_path))


def test_read_video_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no image files"):
        read_video(tmp_path / "empty")
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(DataFormatError, match="clip.mp4"):
        list(read_video(bad))
