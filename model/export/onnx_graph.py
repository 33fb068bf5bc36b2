"""ONNX export of the float multi-task model: one graph per task (opset 17).

Each graph maps images float32 [N, 3, H, W] in [0, 1] (named ``images``, batch dynamic)
to the task head's output (named ``output``: semseg logits [N, C, H, W], depth metres
[N, 1, H, W], normals [N, 3, H, W], edge logits [N, 1, H, W]). A sub-task's graph folds its
merged weights W_b + dW_k into constants. Every file is checked with ``onnx.checker`` and
its onnxruntime outputs compared with PyTorch on random images before it is kept.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import torch
from deltamtl.contract.atomic import atomic_write_with
from torch import nn

OPSET = 17


class TaskGraph(nn.Module):
    """images -> one task's output tensor (what the ONNX graph computes)."""

    def __init__(self, model: nn.Module, task: str) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images, task=self.task)[self.task]


def _export(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    kwargs = {"input_names": ["images"], "output_names": ["output"], "opset_version": OPSET,
              "dynamic_axes": {"images": {0: "batch"}, "output": {0: "batch"}}}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter: no onnxscript dependency
    with warnings.catch_warnings():  # shape checks trace to constants: the image size is fixed
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, (example,), str(path), **kwargs)


def check_onnx(path: Path, module: nn.Module, img_size: int, batch: int = 2, seed: int = 0,
               atol: float = 1e-4, rtol: float = 1e-3) -> float:
    """onnx.checker + onnxruntime vs PyTorch on random images; returns the max |difference|."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, img_size, img_size, generator=gen)
    with torch.no_grad():
        ref = module(images).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["output"], {"images": images.numpy()})[0]
    if got.shape != ref.shape:
        raise ValueError(f"{path}: onnxruntime output shape {got.shape}, PyTorch {ref.shape}")
    if not np.allclose(got, ref, atol=atol, rtol=rtol):
        raise ValueError(f"{path}: onnxruntime differs from PyTorch by {np.abs(got - ref).max():.3g}")
    return float(np.abs(got - ref).max())


@torch.no_grad()
def export_onnx(mt: nn.Module, out_dir: Path, tasks: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Write ``<out_dir>/<task>.onnx`` for every task of a MultiTask (float, eval mode)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mt.eval()
    img_size = int(mt.base.img_size)
    written: dict[str, Path] = {}
    for task in tasks or mt.tasks:
        graph = TaskGraph(mt, task).eval()
        def write(tmp: Path, graph: nn.Module = graph) -> None:
            _export(graph, torch.rand(1, 3, img_size, img_size), tmp)
            check_onnx(tmp, graph, img_size)  # a graph that fails the check is never renamed

        atomic_write_with(out_dir / f"{task}.onnx", write, suffix=".onnx")
        written[task] = out_dir / f"{task}.onnx"
    return written
