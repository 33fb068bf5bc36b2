"""Per-task predictions from the runner's output maps, and colourised overlays.

The runner returns each task's head output [C, H, W] (float32, host float ops). The
predictions follow the metrics' conventions (model/training/evaluate.py,
``predictions_to_numpy``): semseg = argmax class, depth = channel 0 in metres, normals =
unit vectors, edges = sigmoid probability. Colours: semseg a fixed class palette blended
over the frame, depth viridis over a fixed range (so brightness means the same on every
frame), normals (n + 1) / 2, edges white on the darkened frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

TASK_ORDER = ("semseg", "depth", "normals", "edges")
DEFAULT_DEPTH_RANGE_M = (0.5, 8.0)  # the synthetic rooms' depth span (docs/data.md)


def predictions(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{task: head output [C, H, W]} -> {task: prediction map} (see the module docstring)."""
    out: dict[str, np.ndarray] = {}
    for task, y in outputs.items():
        y = np.asarray(y, np.float32)
        if y.ndim != 3:
            raise ValueError(f"{task}: head output of shape {y.shape}, expected [C, H, W]")
        if task == "semseg":
            out[task] = y.argmax(axis=0).astype(np.int64)
        elif task == "depth":
            out[task] = y[0]
        elif task == "normals":
            n = y[:3].transpose(1, 2, 0)
            out[task] = n / np.maximum(np.linalg.norm(n, axis=2, keepdims=True), 1e-6)
        elif task == "edges":
            out[task] = 1.0 / (1.0 + np.exp(-y[0]))
        else:
            raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASK_ORDER)}")
    return out


def palette(n: int) -> np.ndarray:
    """n RGB colours in [0, 1] (matplotlib's tab10/tab20, the demo's palette)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N)[:3] for i in range(n)], dtype=np.float32)


def colourise(task: str, pred: np.ndarray, rgb: np.ndarray, num_classes: int = 20,
              depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE_M) -> np.ndarray:
    """One task's prediction as a uint8 [H, W, 3] image over the frame ``rgb``."""
    import matplotlib

    base = rgb.astype(np.float32) / 255.0
    if task == "semseg":
        colours = palette(num_classes)[np.clip(pred, 0, num_classes - 1)]
        img = 0.35 * base + 0.65 * colours
    elif task == "depth":
        lo, hi = depth_range
        img = matplotlib.colormaps["viridis"](np.clip((pred - lo) / max(hi - lo, 1e-6), 0, 1))[..., :3]
    elif task == "normals":
        img = np.clip((pred + 1.0) / 2.0, 0, 1)
    elif task == "edges":
        img = 0.3 * base + 0.7 * np.clip(pred, 0, 1)[..., None]
    else:
        raise ValueError(f"unknown task {task!r}")
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _upscale(img: np.ndarray, scale: int) -> np.ndarray:
    return img if scale == 1 else np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def overlay_row(rgb: np.ndarray, preds: Mapping[str, np.ndarray], scale: int = 4,
                num_classes: int = 20, label: str | None = None,
                tasks: Sequence[str] = TASK_ORDER) -> np.ndarray:
    """The frame and each task's overlay side by side (nearest-neighbour upscaled by
    ``scale`` so a 64x64 model input stays readable), one uint8 image per frame; tasks
    the model lacks are grey panels. ``label`` is drawn in the top-left corner."""
    panels = [rgb]
    for t in tasks:
        panels.append(colourise(t, preds[t], rgb, num_classes) if t in preds
                      else np.full_like(rgb, 128))
    row = _upscale(np.concatenate(panels, axis=1), scale)
    if label:
        from PIL import Image, ImageDraw

        im = Image.fromarray(row)
        draw = ImageDraw.Draw(im)
        draw.rectangle((0, 0, 7 * len(label) + 4, 13), fill=(0, 0, 0))
        draw.text((2, 1), label, fill=(255, 255, 255))
        row = np.asarray(im)
    return row


def save_grid_png(path: str, rows: Sequence[np.ndarray], titles: Sequence[str], tasks: Sequence[str],
                  present: Sequence[str]) -> None:
    """A PNG grid: one row per chosen frame (frame, then each task), column titles on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from deltamtl.contract.atomic import atomic_path

    fig, axes = plt.subplots(len(rows), 1, figsize=(2.0 * (len(tasks) + 1), 2.1 * len(rows) + 0.4),
                             squeeze=False)
    cols = ["frame"] + [t if t in present else f"{t} (no model)" for t in tasks]
    for ax, row, title in zip(axes[:, 0], rows, titles, strict=True):
        ax.imshow(row)
        ax.set_xticks([(i + 0.5) * row.shape[1] / len(cols) for i in range(len(cols))])
        ax.set_xticklabels(cols, fontsize=8)
        ax.xaxis.tick_top()
        ax.set_yticks([])
        ax.set_ylabel(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
