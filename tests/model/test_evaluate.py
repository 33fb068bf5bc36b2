"""Evaluation: CLI output of every metric, trivial baselines, perfect predictions, acceptance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from deltamtl.model.config import load_config
from deltamtl.model.data.synthetic import CLASS_NAMES, IGNORE_INDEX, TASKS
from deltamtl.model.training.evaluate import (
    acceptance,
    baseline_stats,
    evaluate_baselines,
    evaluate_model,
    predictions_to_numpy,
)
from deltamtl.model.training.evaluate_checkpoint import main
from deltamtl.model.training.metrics import PRIMARY_METRIC
from deltamtl.model.training.recipe import synthetic_split
from deltamtl.model.training.train import train
from torch import nn

SMALL = [
    "model.img_size=32", "model.patch_size=8", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
    "model.head_channels=8", "data.train_clips=2", "data.val_clips=1", "data.test_clips=1",
    "data.frames_per_clip=3", "train.batch_size=2", "train.warmup_steps=1", "train.steps=1",
    "train.eval_every=1000", "train.log_every=1", "train.threads=1", "eval.batch_size=4",
]


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load_config("configs/tiny.yaml", SMALL)


def test_cli_prints_every_metric_and_baseline(cfg, tmp_path, capsys):
    torch.manual_seed(0)
    train(cfg, "mt", tmp_path / "run", progress=False)  # an (almost) untrained 4-task model
    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    assert main(["--ckpt", str(tmp_path / "run" / "last.pt"), "--split", "val", "--out", str(out_json),
                 "--threads", "1"]) == 0
    text = capsys.readouterr().out
    result = json.loads(out_json.read_text())
    assert result["tasks"] == list(TASKS) and result["split"] == "val" and result["n_images"] == 3
    for task in TASKS:
        assert f"== {task}" in text
        assert set(result["model"][task]) == set(result["baselines"][task])
        for metric, value in result["model"][task].items():
            assert metric in text
            assert value is None or isinstance(value, float)  # None: NaN (e.g. a class absent)
        assert isinstance(result["model"][task][PRIMARY_METRIC[task][0]], float)
        a = result["acceptance"][task]
        assert a["metric"] == PRIMARY_METRIC[task][0] and isinstance(a["pass"], bool)
    for name in ("majority class", "mean depth", "constant mean normal", "all-edge"):
        assert name in text
    assert "IoU/" + CLASS_NAMES[0] in text
    # more held-out clips at evaluation time; the model section cannot change
    assert main(["--ckpt", str(tmp_path / "run" / "last.pt"), "--split", "val", "--out", str(out_json),
                 "--set", "data.val_clips=2", "--threads", "1"]) == 0
    assert json.loads(out_json.read_text())["n_images"] == 6
    capsys.readouterr()
    assert main(["--ckpt", str(tmp_path / "run" / "last.pt"), "--set", "model.depth=3"]) == 2
    assert "only data.* and eval.* keys" in capsys.readouterr().err


class _Oracle(nn.Module):
    """Returns the ground truth of each image in the model's output conventions."""

    def __init__(self, dataset, num_classes: int) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.num_classes = num_classes
        self.lookup = {self._key(dataset[i]["image"]): dataset[i] for i in range(len(dataset))}

    @staticmethod
    def _key(image: torch.Tensor) -> bytes:
        return image.numpy().tobytes()

    def forward(self, images, task):
        tasks = (task,) if isinstance(task, str) else task
        items = [self.lookup[self._key(img)] for img in images]
        out = {}
        for t in tasks:
            gt = torch.stack([it[t] for it in items])
            if t == "semseg":
                out[t] = torch.nn.functional.one_hot(gt.clamp_max(self.num_classes - 1), self.num_classes).permute(0, 3, 1, 2).float() * 10
            elif t == "depth":
                out[t] = gt / 1000.0
            elif t == "normals":
                out[t] = gt * 3.0  # unnormalised on purpose
            else:
                out[t] = (gt * 2 - 1) * 20.0
        return out


def test_perfect_predictions_score_perfectly(cfg):
    ds = synthetic_split(cfg, "val")
    metrics = evaluate_model(_Oracle(ds, len(CLASS_NAMES)), ds, TASKS, batch_size=2)
    assert metrics["semseg"]["mIoU"] == pytest.approx(1.0) and metrics["semseg"]["pixel_acc"] == pytest.approx(1.0)
    assert metrics["depth"]["rmse_mm"] == pytest.approx(0.0, abs=1e-3)
    # float32 unit normals: a dot product one rounding below 1 is arccos(1 - 2^-23)
    # = sqrt(2^-22) rad = 0.028 degrees, the largest angle rounding alone can produce
    assert metrics["normals"]["mErr_deg"] == pytest.approx(0.0, abs=0.03)
    # binary edges predicted as they are: the threshold sweep has a cut between the two
    # values, where precision and recall are both exactly 1
    assert metrics["edges"]["odsF"] == pytest.approx(1.0, rel=1e-9)


def test_baselines_match_direct_computation(cfg):
    train_ds, val_ds = synthetic_split(cfg, "train"), synthetic_split(cfg, "val")
    stats = baseline_stats(train_ds, TASKS)
    labels = np.concatenate([c.semseg.ravel() for c in train_ds.clips])
    labels = labels[labels != IGNORE_INDEX]
    assert stats["semseg"] == int(np.bincount(labels).argmax())
    depth = np.concatenate([c.depth.ravel() for c in train_ds.clips]).astype(np.float64)
    assert stats["depth"] == pytest.approx(depth[depth > 0].mean(), rel=1e-6)
    normal = np.concatenate([c.normals.reshape(-1, 3) for c in train_ds.clips]).astype(np.float64).sum(0)
    np.testing.assert_allclose(stats["normals"], normal / np.linalg.norm(normal), rtol=1e-5)
    base = evaluate_baselines(stats, val_ds, TASKS, batch_size=2)
    val_labels = np.concatenate([c.semseg.ravel() for c in val_ds.clips])
    assert base["semseg"]["pixel_acc"] == pytest.approx(np.mean(val_labels == stats["semseg"]))
    val_depth = np.concatenate([c.depth.ravel() for c in val_ds.clips]).astype(np.float64)
    val_depth = val_depth[val_depth > 0]
    assert base["depth"]["rmse_mm"] == pytest.approx(np.sqrt(np.mean((val_depth - stats["depth"]) ** 2)), rel=1e-4)
    edge_frac = np.concatenate([c.edges.ravel() for c in val_ds.clips]).mean()
    # all pixels predicted: every ground-truth edge pixel is matched (recall 1) and each is
    # matched by one predicted pixel, so precision is the edge fraction: exact up to float
    # rounding, hence rel=1e-6 (the meter runs unthinned here, evaluate_baselines)
    assert base["edges"]["odsR"] == pytest.approx(1.0, rel=1e-6)
    assert base["edges"]["odsP"] == pytest.approx(edge_frac, rel=1e-6)
    assert base["edges"]["odsF"] == pytest.approx(2 * edge_frac / (1 + edge_frac), rel=1e-6)


def test_cli_names_a_missing_checkpoint(tmp_path, capsys):
    assert main(["--ckpt", str(tmp_path / "absent.pt")]) == 2
    assert f"{tmp_path / 'absent.pt'}: no such checkpoint file" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    torch.save({"weights": 1}, junk)
    assert main(["--ckpt", str(junk)]) == 2
    assert "missing field(s) format" in capsys.readouterr().err


def test_prediction_conversions():
    logits = torch.randn(2, 5, 4, 4)
    np.testing.assert_array_equal(predictions_to_numpy("semseg", logits), logits.argmax(1).numpy())
    depth_m = torch.rand(2, 1, 4, 4) * 5
    np.testing.assert_allclose(predictions_to_numpy("depth", depth_m), depth_m[:, 0].numpy() * 1000, rtol=1e-6)
    normals = predictions_to_numpy("normals", torch.randn(2, 3, 4, 4))
    assert normals.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0, rtol=1e-5)
    edges = predictions_to_numpy("edges", torch.randn(2, 1, 4, 4) * 10)
    assert edges.shape == (2, 4, 4) and edges.min() >= 0 and edges.max() <= 1


def test_acceptance_rules():
    base = {"semseg": {"mIoU": 0.1}, "depth": {"rmse_mm": 1000.0}, "normals": {"mErr_deg": 50.0},
            "edges": {"odsF": 0.2}}
    good = {"semseg": {"mIoU": 0.31}, "depth": {"rmse_mm": 499.0}, "normals": {"mErr_deg": 29.0},
            "edges": {"odsF": 0.21}}
    bad = {"semseg": {"mIoU": 0.29}, "depth": {"rmse_mm": 501.0}, "normals": {"mErr_deg": 31.0},
           "edges": {"odsF": 0.2}}
    assert all(a["pass"] for a in acceptance(good, base).values())
    assert not any(a["pass"] for a in acceptance(bad, base).values())
    assert acceptance(good, base)["depth"]["ratio"] == pytest.approx(0.499)
