"""Checkpoints that cannot be used: one-line CheckpointError naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltamtl.contract.errors import UserInputError
from deltamtl.model.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    atomic_torch_save,
    load_checkpoint,
    load_model_state,
)
from deltamtl.model.config import load_config
from deltamtl.model.training.vit import MultiTaskViT

SMALL = ["model.depth=1", "model.embed_dim=32", "model.num_heads=2", "model.num_classes=3",
         "model.img_size=16", "model.patch_size=8", "model.head_channels=4"]


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load_config("configs/tiny.yaml", SMALL)


def _ckpt(cfg: dict, **change) -> dict:
    model = MultiTaskViT(cfg, ("semseg",))
    out = {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "step": 3, "config": cfg,
           "recipe": "st", "task": "semseg", "tasks": ("semseg",), "metrics": {}}
    out.update(change)
    return out


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert isinstance(exc.value, UserInputError)
    return message


def test_a_good_checkpoint_loads(tmp_path: Path, cfg: dict) -> None:
    path = tmp_path / "good.pt"
    atomic_torch_save(_ckpt(cfg), path)
    ckpt = load_checkpoint(path)
    model = MultiTaskViT(ckpt["config"], ckpt["tasks"])
    load_model_state(model, ckpt["model"], path)


@pytest.mark.parametrize(("write", "pattern"), [
    (lambda p, c: p.write_bytes(b""), r"not a readable checkpoint \(truncated, or not written by torch\.save\)"),
    (lambda p, c: p.write_text("model: yes\n"), r"not a readable checkpoint"),
    (lambda p, c: (atomic_torch_save(_ckpt(c), p), p.write_bytes(p.read_bytes()[:-100])),
     r"not a readable checkpoint"),
    (lambda p, c: atomic_torch_save([1, 2], p), r"not a deltamtl checkpoint \(top level is list\)"),
    (lambda p, c: atomic_torch_save({k: v for k, v in _ckpt(c).items() if k != "step"}, p),
     r"not a deltamtl checkpoint: missing field\(s\) step"),
    (lambda p, c: atomic_torch_save(_ckpt(c, format="other-1"), p), r"format 'other-1', expected"),
    (lambda p, c: atomic_torch_save(_ckpt(c, tasks=("semseg", "colour")), p),
     r"field tasks: expected task names from .*, got \('semseg', 'colour'\)"),
    (lambda p, c: atomic_torch_save(_ckpt(c, step=2.5), p), r"field step: expected an integer >= 0, got 2\.5"),
    (lambda p, c: atomic_torch_save(_ckpt(c, model={"w": 1}), p), r"field model: expected a state dict"),
])
def test_unusable_files_are_named(tmp_path: Path, cfg: dict, write, pattern: str) -> None:
    path = tmp_path / "bad.pt"
    write(path, cfg)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path)
    _one_line(info, path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_weights_of_another_model_are_named(tmp_path: Path, cfg: dict) -> None:
    path = tmp_path / "other.pt"
    wider = load_config("configs/tiny.yaml", [*SMALL, "model.embed_dim=48", "model.depth=2"])
    atomic_torch_save(_ckpt(wider), path)
    state = load_checkpoint(path)["model"]
    with pytest.raises(CheckpointError) as info:
        load_model_state(MultiTaskViT(cfg, ("semseg",)), state, path)
    message = _one_line(info, path)
    assert "weights do not fit the model built from the config" in message
    assert "shape of " in message and "checkpoint [" in message and "model [" in message
    assert "unexpected key(s) encoder.blocks.1." in message
    with pytest.raises(CheckpointError, match=r"missing \d+ key\(s\) heads\.depth"):
        load_model_state(MultiTaskViT(cfg, ("semseg", "depth")), _ckpt(cfg)["model"], path)


def test_evaluate_command_refuses_a_mismatched_checkpoint(tmp_path: Path, cfg: dict, capsys) -> None:
    from deltamtl import cli

    path = tmp_path / "mixed.pt"
    deeper = load_config("configs/tiny.yaml", [*SMALL, "model.depth=2"])
    atomic_torch_save(_ckpt(cfg, config=deeper), path)  # config says 2 blocks, weights hold 1
    assert cli.main(["evaluate", "--ckpt", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"deltamtl evaluate: error: {path}: weights do not fit")
    assert "missing" in err[0] and "encoder.blocks.1." in err[0]


def test_evaluate_overrides_are_checked_by_the_schema(tmp_path: Path, cfg: dict, capsys) -> None:
    from deltamtl import cli

    path = tmp_path / "good.pt"
    atomic_torch_save(_ckpt(cfg), path)
    assert cli.main(["evaluate", "--ckpt", str(path), "--set", "data.test_clips=2.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"deltamtl evaluate: error: {path} (override): data.test_clips: expected an "
                   "integer, got float 2.5"]


def test_config_difference_names_the_first_key() -> None:
    from deltamtl.model.checkpoint import config_difference

    a = {"embed_dim": 96, "pixel_std": [0.25, 0.25, 0.25]}
    assert config_difference(a, dict(a), "model") is None
    assert config_difference(a, {**a, "embed_dim": 128}, "model") == "model.embed_dim: checkpoint 96, config 128"
    assert config_difference(a, {**a, "depth": 2}, "model") == "model.depth: not in the checkpoint, config 2"


def test_resume_with_another_model_is_one_line(tmp_path: Path, cfg: dict, capsys) -> None:
    from deltamtl.model.training.train import main

    atomic_torch_save(_ckpt(cfg), tmp_path / "last.pt")
    overrides = [a for o in [*SMALL, "model.embed_dim=48"] for a in ("--set", o)]
    assert main(["--config", "configs/tiny.yaml", "--task", "semseg", "--out", str(tmp_path),
                 "--resume", "--no-progress", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"deltamtl train: error: --resume: {tmp_path / 'last.pt'}: trained with another "
                   "model: model.embed_dim: checkpoint 32, config 48"]
