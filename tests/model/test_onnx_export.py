"""ONNX export: one float graph per task, checked by onnx.checker and against onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from deltamtl.model.export.onnx_graph import OPSET, check_onnx, export_onnx
from deltamtl.model.quant.assemble import random_multitask

from tests.helpers import seeding

pytestmark = pytest.mark.quant  # make test-quant

torch.set_num_threads(1)


def test_every_task_exports_and_matches_onnxruntime(tmp_path: Path) -> None:
    seed = seeding.seed_for("test_every_task_exports_and_matches_onnxruntime", bits=20)
    mt = random_multitask(seed)
    paths = export_onnx(mt, tmp_path)
    assert set(paths) == {"semseg", "depth", "normals", "edges"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{t}.onnx" for t in paths)
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = mt(images)
    for task, path in paths.items():
        model = onnx.load(str(path))
        assert any(o.domain in ("", "ai.onnx") and o.version == OPSET for o in model.opset_import)
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
            None, {"images": images.numpy()})[0]  # batch 3: the batch axis is dynamic
        np.testing.assert_allclose(got, ref[task].numpy(), rtol=1e-3, atol=1e-4)


def test_check_onnx_detects_a_different_model(tmp_path: Path) -> None:
    mt = random_multitask(1)
    path = export_onnx(mt, tmp_path, tasks=("depth",))["depth"]
    other = random_multitask(2)
    from deltamtl.model.export.onnx_graph import TaskGraph

    try:
        check_onnx(path, TaskGraph(other, "depth").eval(), 16)
    except ValueError as exc:
        assert "differs from PyTorch" in str(exc)
    else:
        raise AssertionError("a graph of another model passed the comparison")
