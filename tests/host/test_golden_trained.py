"""The trained model: a whole 30-frame, 4-task clip bit-exact against the fake-quant model at
every site and frame, and int8 accuracy within 2 % of float on every task's primary metric.

Needs the trained checkpoints named by configs/tiny.yaml (base + step-3 sub-tasks); skipped
with the reason when they are absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from deltamtl.model.config import load_config
from deltamtl.model.export.quantized_model import ReusePolicy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def quantised():
    import os

    from deltamtl.model.quant.cli import build_quantizer

    cwd = os.getcwd()
    os.chdir(ROOT)  # checkpoint paths in the config are relative to the repository root
    try:
        cfg = load_config(ROOT / "configs" / "tiny.yaml")
        # DELTAMTL_SUB_CKPTS="normals=runs/x/last.pt,edges=..." overrides sub-task checkpoints
        subs = dict(i.split("=", 1) for i in os.environ.get("DELTAMTL_SUB_CKPTS", "").split(",") if "=" in i)
        cfg["sharing"].setdefault("quant", {})["sub_checkpoints"] = subs
        try:
            q = build_quantizer(cfg)
        except FileNotFoundError as exc:
            pytest.skip(str(exc))
    finally:
        os.chdir(cwd)
    if len(q.mt.tasks) < 4:
        pytest.skip(f"trained model has tasks {q.mt.tasks}, not all four")
    return cfg, q


def test_trained_clip_30_frames_bit_exact(quantised) -> None:
    from deltamtl.host.verify import bitexact_clip
    from deltamtl.model.data.datasets import synthetic_clips

    cfg, q = quantised
    qm = q.to_quantized(keyframe_interval=5)
    qm.policy = ReusePolicy(depth=qm.depth, keyframe_interval=5, key_offset=2,
                            boundaries={"depth": 1, "normals": 3, "edges": -1})
    size = int(cfg["model"]["img_size"])
    rgb = synthetic_clips("test", 1, 30, size, size, seed=int(cfg["data"]["seed"]))[0].rgb
    res = bitexact_clip(q, qm, rgb)
    assert res["mismatches"] == 0, res["first_mismatches"]
    assert res["site_outputs_compared"] == 30 * (1 + 4 * qm.depth * 4)
    assert res["modes"] == ["DENSE", "TASK", "TEMPORAL"]


def test_trained_int8_accuracy_within_2_percent(quantised) -> None:
    from deltamtl.model.quant.accuracy import compare_accuracy
    from deltamtl.model.training.recipe import synthetic_split

    cfg, q = quantised
    qm = q.to_quantized()
    q.bind(qm)
    acc = compare_accuracy(q, synthetic_split(cfg, "val"), batch_size=16)
    bad = {t: round(100 * a["worse_rel"], 2) for t, a in acc.items() if not a["pass"]}
    assert not bad, f"int8 worse than float by more than 2 % (relative, %): {bad}"
