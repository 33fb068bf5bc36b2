"""Training loop: losses learn, schedule, data order, checkpoints, resume equivalence, recipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from deltamtl.model.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from deltamtl.model.config import load_config
from deltamtl.model.training.recipe import (
    RECIPES,
    DenseRecipe,
    Recipe,
    RecipeArgs,
    make_recipe,
    resolve_recipe,
)
from deltamtl.model.training.train import batch_plan, lr_factor, main, train

# A very small model and data set so each training test runs in seconds on one core.
SMALL = [
    "model.img_size=32", "model.patch_size=8", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
    "model.head_channels=8", "data.train_clips=2", "data.val_clips=1", "data.frames_per_clip=4",
    "train.batch_size=4", "train.warmup_steps=2", "train.eval_every=1000", "train.ckpt_every=1000",
    "train.log_every=1", "train.threads=1", "eval.batch_size=8",
]


def small_cfg(*extra: str) -> dict:
    return load_config("configs/tiny.yaml", [*SMALL, *extra])


def test_lr_schedule_warmup_then_cosine():
    total, warm, floor = 100, 10, 0.1
    f = [lr_factor(s, warm, total, floor) for s in range(total + 1)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a <= b + 1e-12 for a, b in zip(f[:10], f[1:10], strict=False))
    assert all(a >= b - 1e-12 for a, b in zip(f[10:], f[11:], strict=False))
    assert f[total] == pytest.approx(floor)
    assert f[55] == pytest.approx(floor + (1 - floor) * 0.5, abs=1e-9)


def test_batch_plan_is_deterministic_and_sharded():
    data = list(range(23))
    a0 = batch_plan(data, 3, seed=5, epoch=2, rank=0, world=2)
    a1 = batch_plan(data, 3, seed=5, epoch=2, rank=1, world=2)
    assert a0 == batch_plan(data, 3, seed=5, epoch=2, rank=0, world=2)
    assert a0 != batch_plan(data, 3, seed=5, epoch=3, rank=0, world=2)
    flat0, flat1 = [i for b in a0 for i in b], [i for b in a1 for i in b]
    assert not set(flat0) & set(flat1)
    assert all(len(b) == 3 for b in a0 + a1) and len(a0) == len(a1)


@pytest.mark.parametrize("task", ["semseg", "depth", "normals", "edges"])
def test_loss_decreases_on_a_fixed_batch(task):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = small_cfg()
    recipe = make_recipe("st", RecipeArgs(cfg, task))
    model = recipe.build_model()
    train_ds, _ = recipe.datasets()
    idx = torch.randperm(len(train_ds))[:4].tolist()
    batch = {k: torch.stack([train_ds[i][k] for i in idx]) for k in ("image", task)}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, logs = recipe.training_loss(model, batch, 0)
        assert logs[f"loss_{task}"] == pytest.approx(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_resume_is_equivalent_to_uninterrupted(tmp_path):
    cfg = small_cfg("train.steps=6")
    straight = train(cfg, "st", tmp_path / "a", task="semseg", progress=False)
    assert straight["step"] == 6
    first = train(cfg, "st", tmp_path / "b", task="semseg", stop_after=3, progress=False)
    assert first["step"] == 3 and load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 3
    resumed = train(cfg, "st", tmp_path / "b", task="semseg", resume=True, progress=False)
    assert resumed["step"] == 6
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6, msg=key)
    moments_a = a["optimizer"]["state"][0]["exp_avg"]
    torch.testing.assert_close(b["optimizer"]["state"][0]["exp_avg"], moments_a, rtol=0, atol=1e-6)
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6
    # and training moved away from the seeded initialisation
    torch.manual_seed(cfg["train"]["seed"])
    init = make_recipe("st", RecipeArgs(cfg, "semseg")).build_model().state_dict()
    assert not torch.equal(init["encoder.patch_embed.weight"], a["model"]["encoder.patch_embed.weight"])


class _NoisyRecipe(DenseRecipe):
    """Draws from torch's RNG every step, so resume must restore RNG state to match."""

    def training_loss(self, model, batch, step):
        noisy = dict(batch, image=(batch["image"] + 0.1 * torch.randn_like(batch["image"])).clamp(0, 1))
        return super().training_loss(model, noisy, step)


def recipe_noisy(args: RecipeArgs) -> Recipe:
    return _NoisyRecipe(args, ("depth",))


def test_resume_restores_rng_for_stochastic_recipes(tmp_path):
    cfg = small_cfg("train.steps=4")
    name = f"{__name__}:recipe_noisy"
    train(cfg, name, tmp_path / "a", progress=False)
    train(cfg, name, tmp_path / "b", stop_after=2, progress=False)
    train(cfg, name, tmp_path / "b", resume=True, progress=False)
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=1e-6, msg=key)
    # without the RNG restore the noise differs and so do the weights
    train(cfg, name, tmp_path / "c", stop_after=2, progress=False)
    ckpt = load_checkpoint(tmp_path / "c" / "last.pt")
    ckpt["rng"] = []
    torch.save(ckpt, tmp_path / "c" / "last.pt")
    train(cfg, name, tmp_path / "c", resume=True, progress=False)
    c = load_checkpoint(tmp_path / "c" / "last.pt")
    assert not torch.equal(c["model"]["heads.depth.out.weight"], a["model"]["heads.depth.out.weight"])


def test_checkpoint_contents_and_logs(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["--config", "configs/tiny.yaml", "--task", "edges", "--out", str(out), "--steps", "2",
               "--no-progress", *[a for kv in SMALL for a in ("--set", kv)]])
    assert rc == 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["step"] == 2 and ckpt["tasks"] == ("edges",)
    assert ckpt["recipe"] == "st" and ckpt["config"]["train"]["steps"] == 2
    assert {"optimizer", "scheduler", "rng"} <= set(ckpt) and len(ckpt["rng"]) == 1
    # validated at the last step: the edges meter's full result, every value a fraction
    # (precision, recall, F, the threshold of the 0.01..0.99 sweep; docs/metrics.md)
    metrics = ckpt["metrics"]
    assert set(metrics) == {"edges"}
    edges = metrics["edges"]
    assert set(edges) == {"odsF", "odsP", "odsR", "ods_threshold", "oisF"}, edges
    assert all(0.0 <= v <= 1.0 for v in edges.values()), edges  # NaN fails too
    p, r = edges["odsP"], edges["odsR"]
    # odsF is the harmonic mean of the precision and recall at the same threshold
    assert edges["odsF"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0, rel=1e-9)
    assert (out / "config.yaml").is_file() and (out / "log.jsonl").read_text().count("\n") >= 3
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert '"step": 2' in capsys.readouterr().out


def test_resume_refuses_mismatched_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="last.pt does not exist"):
        train(small_cfg("train.steps=1"), "st", tmp_path / "none", task="depth", resume=True, progress=False)
    train(small_cfg("train.steps=1"), "st", tmp_path / "r", task="depth", progress=False)
    with pytest.raises(ValueError, match=r"trained with another model: model\.depth: checkpoint 1, config 2"):
        train(small_cfg("train.steps=2", "model.depth=2"), "st", tmp_path / "r", task="depth", resume=True,
              progress=False)


def test_recipe_registry_is_lazy_and_validates():
    code = ("import sys, deltamtl.model.training.train, deltamtl.model.training.evaluate; "
            "print('deltamtl.model.sharing.train_steps' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
    assert {"st", "mt", "step1", "step2", "step3"} <= set(RECIPES)
    assert RECIPES["step2"] == "deltamtl.model.sharing.train_steps:recipe_step2"
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        resolve_recipe("nope")
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        resolve_recipe("deltamtl.model.training.recipe:missing")
    cfg = small_cfg()
    with pytest.raises(ValueError, match="needs exactly one --task"):
        make_recipe("st", RecipeArgs(cfg, None))
    with pytest.raises(ValueError, match="unknown task 'flow'"):
        make_recipe("st", RecipeArgs(cfg, "flow"))
    mt = make_recipe("deltamtl.model.training.recipe:recipe_mt", RecipeArgs(cfg, "semseg,edges"))
    assert isinstance(mt, DenseRecipe) and isinstance(mt, Recipe) and mt.tasks == ("semseg", "edges")


def test_multitask_loss_is_weighted_sum():
    torch.manual_seed(1)
    cfg = small_cfg("train.loss_weights.depth=0.25")
    recipe = make_recipe("mt", RecipeArgs(cfg, "semseg,depth"))
    model = recipe.build_model()
    ds, _ = recipe.datasets()
    batch = {k: torch.stack([ds[i][k] for i in range(3)]) for k in ("image", "semseg", "depth")}
    loss, logs = recipe.training_loss(model, batch, 0)
    assert float(loss.detach()) == pytest.approx(logs["loss_semseg"] + 0.25 * logs["loss_depth"], rel=1e-5)


def test_cli_rejects_bad_input_with_a_clear_message(tmp_path, capsys):
    rc = main(["--config", "configs/tiny.yaml", "--task", "semseg", "--out", str(tmp_path), "--set", "train.stepz=3"])
    assert rc == 2
    assert "configs/tiny.yaml (override): train.stepz: no such key" in capsys.readouterr().err
    assert not Path(tmp_path / "last.pt").exists()
    assert main(["--config", str(tmp_path / "nope.yaml"), "--task", "semseg", "--out", str(tmp_path)]) == 2
    assert "nope.yaml: no such config file" in capsys.readouterr().err


def test_hflip_mirrors_every_task_consistently():
    from deltamtl.model.training.augment import hflip_batch

    torch.manual_seed(4)
    b, h, w = 6, 5, 7
    normals = torch.nn.functional.normalize(torch.randn(b, 3, h, w), dim=1)
    batch = {"image": torch.rand(b, 3, h, w), "semseg": torch.randint(0, 8, (b, h, w)),
             "depth": torch.rand(b, 1, h, w), "edges": (torch.rand(b, 1, h, w) > 0.8).float(),
             "normals": normals, "clip": torch.arange(b)}
    torch.manual_seed(9)
    out = hflip_batch(batch, p=0.5)
    torch.manual_seed(9)
    flipped = torch.rand(b) < 0.5
    assert 0 < int(flipped.sum()) < b
    for i in range(b):
        for key in ("image", "semseg", "depth", "edges"):
            expect = batch[key][i].flip(-1) if flipped[i] else batch[key][i]
            assert torch.equal(out[key][i], expect), (key, i)
        n = batch["normals"][i].flip(-1) if flipped[i] else batch["normals"][i]
        if flipped[i]:
            n = n * torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)
        assert torch.equal(out["normals"][i], n)
    assert torch.equal(out["clip"], batch["clip"])
    # mirroring twice is the identity
    all_flipped = hflip_batch(hflip_batch(batch, p=1.0), p=1.0)
    for key in ("image", "semseg", "depth", "edges", "normals"):
        assert torch.equal(all_flipped[key], batch[key])
