"""QAT recipe through the one training entry point, on checkpoints of a small random model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from deltamtl.model.checkpoint import CHECKPOINT_FORMAT, atomic_torch_save, load_checkpoint
from deltamtl.model.config import load_config
from deltamtl.model.quant.assemble import SMALL_MODEL, random_multitask

from tests.helpers import seeding

pytestmark = pytest.mark.quant  # make test-quant

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


def write_trained_checkpoints(tmp: Path, seed: int) -> dict:
    """Base and step-3 sub-task checkpoints of a random model, as the sharing training writes them."""
    mcfg = dict(SMALL_MODEL, num_classes=None)  # the synthetic data set's classes
    overrides = [f"model.{k}={'null' if v is None else v}" for k, v in mcfg.items()
                 if not isinstance(v, list)]
    overrides += ["data.train_clips=1", "data.val_clips=1", "data.test_clips=1", "data.frames_per_clip=4",
                  "train.steps=2", "train.batch_size=2", "train.eval_every=2", "train.ckpt_every=2",
                  "train.warmup_steps=0", "train.threads=1", "eval.batch_size=4",
                  f"sharing.base_checkpoint={tmp}/st_semseg/last.pt", f"sharing.out_root={tmp}/sharing",
                  "sharing.quant={calib_batches: 1}"]
    cfg = load_config(ROOT / "configs" / "tiny.yaml", overrides)
    mt = random_multitask(seed, mcfg)
    common = {"format": CHECKPOINT_FORMAT, "step": 0, "config": cfg}
    atomic_torch_save({**common, "model": mt.base.state_dict(), "recipe": "st", "task": "semseg",
                       "tasks": ("semseg",)}, tmp / "st_semseg" / "last.pt")
    for task, sub in mt.subs.items():
        atomic_torch_save({**common, "model": sub.state_dict(), "recipe": "step3", "task": task,
                           "tasks": (task,)}, tmp / "sharing" / task / "step3" / "last.pt")
    return cfg


def test_recipe_qat_trains_and_checkpoints_scales(tmp_path: Path) -> None:
    from deltamtl.model.training.recipe import RecipeArgs, make_recipe
    from deltamtl.model.training.train import train

    seed = seeding.seed_for("test_recipe_qat_trains_and_checkpoints_scales", bits=20)
    cfg = write_trained_checkpoints(tmp_path, seed)
    res = train(cfg, "deltamtl.model.quant.qat:recipe_qat", tmp_path / "qat", progress=False)
    assert res["step"] == 2
    ckpt = load_checkpoint(res["checkpoint"])
    scales = ckpt["recipe_state"]["scales"]
    assert len(scales) == 1 + 4 * SMALL_MODEL["depth"] and all(v["s_x"] > 0 for v in scales.values())
    assert set(ckpt["metrics"]) == {"semseg", "depth", "normals", "edges"}
    # rebuild from the checkpoint: same scales, an integer model that loads them
    recipe = make_recipe("deltamtl.model.quant.qat:recipe_qat", RecipeArgs(cfg))
    model = recipe.build_model()
    model.load_state_dict(ckpt["model"])
    recipe.load_state_dict(ckpt["recipe_state"])
    qm = recipe.quantizer.to_quantized()
    assert qm.site(0, "attn.qkv").s_x == float(np.float32(scales["0:attn.qkv"]["s_x"]))
    # masked deltas stayed exactly zero through the fine-tune
    sub = model.subs["depth"].encoder.blocks[0].mlp.fc1.inner
    assert not sub.weight_delta.delta[~sub.weight_delta.mask].any()
