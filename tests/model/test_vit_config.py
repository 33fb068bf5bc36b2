"""YAML config loader: shipped configs, overrides, validation errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deltamtl.model.config import ConfigError, apply_overrides, load_config, validate_config
from deltamtl.model.tasks import TASKS

CONFIGS = sorted(Path("configs").glob("*.yaml"))


def test_shipped_configs_validate():
    names = {p.name for p in CONFIGS}
    assert {"tiny.yaml", "vit-tiny-zcu104.yaml", "vit-b-nyud.yaml"} <= names
    for path in CONFIGS:
        cfg = load_config(path)
        assert cfg["model"]["img_size"] % cfg["model"]["patch_size"] == 0
        hc = cfg["sharing"]["hard_concrete"]
        assert (hc["temperature"], hc["stretch_low"], hc["stretch_high"], hc["log_alpha_init"]) == (1.0, -1.5, 1.5, 5.0)
        assert cfg["sharing"]["keyframe_interval"] == 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("task", [None, *TASKS])
def test_every_shipped_config_validates_for_every_task(path, task):
    cfg = load_config(path, task=task)
    validate_config(cfg, str(path))  # idempotent: a loaded config is valid as it stands


def test_duplicate_yaml_keys_are_refused(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text(Path("configs/tiny.yaml").read_text().replace("  lr: 1.0e-3", "  lr: 1.0e-3\n  lr: 2.0e-3"))
    with pytest.raises(ConfigError, match=rf"{p}: invalid YAML at line \d+, column 3: duplicate key 'lr'$"):
        load_config(p)


def test_board_and_paper_shapes():
    zcu = load_config("configs/vit-tiny-zcu104.yaml")["model"]
    assert (zcu["embed_dim"], zcu["depth"], zcu["num_heads"], zcu["img_size"], zcu["patch_size"]) == (192, 12, 3, 224, 16)
    vitb = load_config("configs/vit-b-nyud.yaml")
    assert (vitb["model"]["embed_dim"], vitb["model"]["img_size"]) == (768, 416)
    assert vitb["train"]["betas"] == [0.9, 0.95] and vitb["train"]["weight_decay"] == 1e-6


def test_overrides_parse_yaml_values():
    cfg = load_config("configs/tiny.yaml", ["train.lr=3e-4", "model.qkv_bias=false", "train.steps=7",
                                            "sharing.lambda_w=1e-5", "sharing.threshold_grid=[0.2, 1]"])
    assert cfg["train"]["lr"] == 3e-4 and cfg["model"]["qkv_bias"] is False and cfg["train"]["steps"] == 7
    assert cfg["sharing"]["lambda_w"] == 1e-5 and cfg["sharing"]["threshold_grid"] == [0.2, 1]
    # optional keys the file leaves out are known to the schema (and whole sub-sections)
    vitb = load_config("configs/vit-b-nyud.yaml", ["sharing.max_delta_nnz=400",
                                                   "sharing.quant.calib_batches=2"])
    assert vitb["sharing"]["max_delta_nnz"] == 400 and vitb["sharing"]["quant"] == {"calib_batches": 2}
    base = {"a": {"b": 1}}
    assert apply_overrides(base, ["a.b=2"]) == {"a": {"b": 2}} and base == {"a": {"b": 1}}


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("train.lrr=1", r"train\.lrr: no such key in the config \(did you mean 'train\.lr'\?\)"),
        ("nosection.x=1", r"nosection: no such key"),
        ("sharing.new_key=[1, 2]", r"sharing\.new_key: no such key"),
        ("sharing.hard_concrete.temprature=1", r"did you mean 'sharing\.hard_concrete\.temperature'"),
        ("train.loss_weights.dpeth=1", r"train\.loss_weights\.dpeth: no such key .*'train\.loss_weights\.depth'"),
        ("train.lr", r"not of the form dot\.key=value"),
        ("train.lr=[1", r"train\.lr: cannot parse value '\[1' as YAML"),
        ("model.patch_size=7", r"model\.patch_size: must divide model\.img_size 64, got 7$"),
        ("model.num_heads=5", r"model\.num_heads: must divide model\.embed_dim 96, got 5$"),
        ("train.steps=abc", r"train\.steps: expected an integer, got string 'abc'$"),
        ("train.steps=2.5", r"train\.steps: expected an integer, got float 2\.5$"),
        ("train.steps='3'", r"train\.steps: expected an integer, got string '3'$"),
        ("train.steps=true", r"train\.steps: expected an integer, got bool True$"),
        ("train.steps=-3", r"train\.steps: must be > 0, got -3$"),
        ("train.lr=.nan", r"train\.lr: expected a finite number, got float nan$"),
        ("train.lr='1e-3'", r"train\.lr: expected a number, got string '1e-3'$"),
        ("model.qkv_bias=3", r"model\.qkv_bias: expected true or false, got int 3$"),
        ("train.depth_loss=l2", r"train\.depth_loss: 'l2' is not one of 'l1', 'silog' or 'berhu'$"),
        ("train.betas=[0.9]", r"train\.betas: too few items \(at least 2\), got \[0\.9\]$"),
        ("train.betas=[0.9, 1.5]", r"train\.betas\[1\]: must be < 1, got 1\.5$"),
        ("train.loss_weights.depth=-1", r"train\.loss_weights\.depth: must be >= 0, got -1$"),
        ("train.min_lr_ratio=1.5", r"train\.min_lr_ratio: must be <= 1, got 1\.5$"),
        ("eval.split=holdout", r"eval\.split: 'holdout' is not one of 'train', 'val' or 'test'$"),
        ("model.pixel_std=[1, 1, 0]", r"model\.pixel_std\[2\]: must be > 0, got 0$"),
        ("model.num_classes=1", r"model\.num_classes: must be >= 2, got 1$"),
        ("sharing.subtasks=[semseg]", r"sharing\.subtasks\[0\]: 'semseg' is not one of"),
        ("sharing.keyframe_offsets=[0, 7]", r"sharing\.keyframe_offsets: offsets must be below sharing\.keyframe_interval 5"),
        ("sharing.boundary=[0, 1, 6]", r"sharing\.boundary: block index 6 beyond model\.depth 6"),
        ("sharing.quant={calib_batch: 1}", r"sharing\.quant\.calib_batch: unknown key \(did you mean 'sharing\.quant\.calib_batches'\?\)"),
    ],
)
def test_bad_overrides_name_file_and_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config("configs/tiny.yaml", [override])
    message = str(info.value)
    assert message.startswith("configs/tiny.yaml (override): ") and "\n" not in message


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{bad}: invalid YAML"):
        load_config(bad)
    cfg = yaml.safe_load(Path("configs/tiny.yaml").read_text())
    del cfg["train"]["warmup_steps"]
    cfg["model"]["extra_knob"] = 1
    p = tmp_path / "broken.yaml"
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=rf"{p}: model\.extra_knob: unknown key"):
        load_config(p)
    del cfg["model"]["extra_knob"]
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=rf"{p}: train\.warmup_steps: missing key"):
        load_config(p)
    del cfg["sharing"]
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=rf"{p}: sharing: missing section"):
        load_config(p)


def _write(tmp_path: Path, cfg: dict) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_per_task_entries_apply_to_their_task_only_and_set_wins(tmp_path):
    cfg = yaml.safe_load(Path("configs/tiny.yaml").read_text())
    cfg["per_task"] = {"depth": {"data.train_clips": 77, "train.depth_loss": "berhu"},
                       "edges": {"sharing.lambda_w": 4.0e-7}}
    p = _write(tmp_path, cfg)
    plain = load_config(p)
    assert plain["data"]["train_clips"] == cfg["data"]["train_clips"]
    depth = load_config(p, task="depth")
    assert depth["data"]["train_clips"] == 77 and depth["train"]["depth_loss"] == "berhu"
    assert depth["sharing"]["lambda_w"] == cfg["sharing"]["lambda_w"]
    assert load_config(p, task="edges")["sharing"]["lambda_w"] == 4.0e-7
    assert load_config(p, task="normals")["data"] == plain["data"]
    # the command line beats the per-task entry (reduced test budgets stay reduced)
    assert load_config(p, ["data.train_clips=3"], task="depth")["data"]["train_clips"] == 3


@pytest.mark.parametrize(
    ("entries", "pattern"),
    [
        ({"depth": {"train.nope": 1}}, r"per_task\.depth\): train\.nope: no such key"),
        ({"depth": {"lambda_w": 1}}, r"per_task\.depth\.lambda_w: key must be dotted"),
        ({"depth": {"train.steps": -2}}, r"per_task\.depth\): train\.steps: must be > 0"),
        ({"depth": [1, 2]}, r"per_task\.depth: expected a mapping, got list \[1, 2\]"),
        ([1], r"per_task: expected a mapping, got list \[1\]"),
        ({"dpth": {"train.steps": 2}}, r"per_task\.dpth: unknown key \(did you mean 'per_task\.depth'\?\)"),
    ],
)
def test_bad_per_task_entries_are_named(tmp_path, entries, pattern):
    cfg = yaml.safe_load(Path("configs/tiny.yaml").read_text())
    cfg["per_task"] = entries
    p = _write(tmp_path, cfg)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(p)  # checked on load, whichever task is trained
    assert str(p) in str(info.value)
