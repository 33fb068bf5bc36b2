"""A small random 4-task quantised model for the streaming tests (16x16 frames, 2 blocks)."""

from __future__ import annotations

import numpy as np
import torch
from deltamtl.model.export.quantized_model import QuantizedModel, ReusePolicy
from deltamtl.model.quant.assemble import random_multitask
from deltamtl.model.quant.quantizer import Quantizer

from tests.helpers.seeding import SEED


def random_walk(n: int, size: int = 16, step: int = 3, seed: int = 0) -> np.ndarray:
    """n uint8 frames that drift slowly: every pixel takes a small random step per frame."""
    rng = np.random.default_rng([SEED, seed])
    walk = np.cumsum(rng.integers(-step, step + 1, (n, size, size, 3)), axis=0) + 128
    return np.clip(walk, 0, 255).astype(np.uint8)


def small_model(th: int = 4, interval: int = 5) -> QuantizedModel:
    """Random base + three sub-tasks, calibrated on random-walk frames; thresholds above 1
    so temporal frames differ from keyframes; depth above its boundary from block 1 on,
    normals keeps its own references in every block, edges shares the base's everywhere."""
    q = Quantizer(random_multitask(SEED % 10_000))
    frames = random_walk(8)
    q.calibrate([torch.from_numpy(frames.transpose(0, 3, 1, 2) / 255.0).float()])
    qm = q.to_quantized()
    qm.policy = ReusePolicy(depth=qm.depth, keyframe_interval=interval,
                            thresholds={t: [th] * qm.depth for t in qm.tasks},
                            boundaries={"depth": 0, "normals": -1})
    return qm
