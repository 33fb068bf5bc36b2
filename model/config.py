"""YAML experiment configs: loading, dotted overrides and validation.

A config has five sections:

* ``model``    ViT shape and heads (read by :mod:`deltamtl.model.training.vit`),
* ``data``     synthetic video split sizes,
* ``train``    optimiser, schedule, per-task loss weights, logging cadence,
* ``sharing``  computation-sharing (Diff-pruning / delta activation) settings, read by
  the multi-task recipes; this module only checks that it is a mapping,
* ``eval``     evaluation batch size and split.

An optional sixth, ``per_task``, maps a task name to dotted keys that apply only when
that task is trained (its single-task model and its sharing steps): e.g. depth trains on
more clips than the other tasks.  ``load_config(path, overrides, task=...)`` applies them
after the file and before the command-line overrides, so ``--set`` always wins.

``load_config(path, overrides)`` reads the file, applies ``dot.key=value`` overrides
(values parsed as YAML, so ``train.lr=3e-4`` is a float and ``model.qkv_bias=false`` a
bool), validates the known sections and returns a plain nested ``dict``.  Every error
names the file and the dotted key.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

SECTIONS = ("model", "data", "train", "sharing", "eval")
PER_TASK = "per_task"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass


class ConfigError(ValueError):
    """A config file or override is malformed; the message names file and key."""


# key -> (accepted python types, required). bool is excluded from int/float checks below.
_INT = (int,)
_NUM = (int, float)
_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "model": {
        "img_size": (_INT, True),
        "patch_size": (_INT, True),
        "embed_dim": (_INT, True),
        "depth": (_INT, True),
        "num_heads": (_INT, True),
        "mlp_ratio": (_NUM, True),
        "qkv_bias": ((bool,), True),
        "ln_eps": (_NUM, True),
        "num_classes": ((int, type(None)), True),
        "head_channels": (_INT, True),
        "head_convs": (_INT, True),
        "pixel_mean": ((list,), True),
        "pixel_std": ((list,), True),
        "depth_init_m": (_NUM, True),
    },
    "data": {
        "dataset": ((str,), True),
        "train_clips": (_INT, True),
        "val_clips": (_INT, True),
        "test_clips": (_INT, True),
        "frames_per_clip": (_INT, True),
        "seed": (_INT, True),
    },
    "train": {
        "seed": (_INT, True),
        "steps": (_INT, True),
        "batch_size": (_INT, True),
        "lr": (_NUM, True),
        "min_lr_ratio": (_NUM, True),
        "warmup_steps": (_INT, True),
        "weight_decay": (_NUM, True),
        "betas": ((list,), True),
        "grad_clip": (_NUM, True),
        "hflip": ((bool,), True),
        "loss_weights": ((dict,), True),
        "depth_loss": ((str,), True),
        "normals_loss": ((str,), True),
        "edge_pos_weight": ((str, int, float), True),
        "eval_every": (_INT, True),
        "ckpt_every": (_INT, True),
        "log_every": (_INT, True),
        "num_workers": (_INT, True),
        "threads": (_INT, True),
    },
    "eval": {
        "batch_size": (_INT, True),
        "split": ((str,), True),
    },
}

DEPTH_LOSSES = ("l1", "silog", "berhu")
NORMALS_LOSSES = ("cosine", "l1")
SPLITS = ("train", "val", "test")


def _fail(source: str, key: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {msg}")


def _parse_override(item: str, source: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"{source}: override {item!r} is not of the form dot.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"{source}: override {item!r} has an empty key part")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: override {key}: cannot parse value {raw!r}: {exc}") from exc
    return parts, value


def apply_overrides(cfg: dict, overrides: Iterable[str], source: str = "<overrides>") -> dict:
    """Return a copy of ``cfg`` with ``dot.key=value`` overrides applied.

    The key must already exist (typos fail loudly), except under ``sharing`` and
    ``train.loss_weights``, which other stages extend freely.
    """
    out = copy.deepcopy(cfg)
    for item in overrides:
        parts, value = _parse_override(item, source)
        _set_dotted(out, parts, value, source)
    return out


def _set_dotted(cfg: dict, parts: list[str], value: Any, source: str) -> None:
    node = cfg
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise _fail(source, ".".join(parts[: i + 1]), "no such key in the config")
        node = node[part]
    if not isinstance(node, dict):
        raise _fail(source, ".".join(parts[:-1]), "is not a mapping, cannot set a sub-key")
    extensible = parts[0] == "sharing" or parts[:2] == ["train", "loss_weights"]
    if parts[-1] not in node and not extensible:
        raise _fail(source, ".".join(parts), "no such key in the config")
    node[parts[-1]] = value


def _per_task_entries(cfg: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """The ``per_task`` section, checked: task -> {dotted key: value}, no per_task keys."""
    block = cfg.get(PER_TASK)
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise _fail(source, PER_TASK, f"must be a mapping task -> {{dotted.key: value}}, got {type(block).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for task, entries in block.items():
        if not isinstance(entries, Mapping):
            raise _fail(source, f"{PER_TASK}.{task}", f"must be a mapping of dotted keys, got {type(entries).__name__}")
        for key in entries:
            if not isinstance(key, str) or key.split(".")[0] not in SECTIONS:
                raise _fail(source, f"{PER_TASK}.{task}.{key}",
                            f"key must be dotted and start with a section ({', '.join(SECTIONS)})")
        out[str(task)] = dict(entries)
    return out


def apply_task_entries(cfg: dict, task: str, source: str = "<config>") -> dict:
    """Return a copy of ``cfg`` with ``per_task[task]`` applied (no-op for unlisted tasks)."""
    entries = _per_task_entries(cfg, source).get(task, {})
    out = copy.deepcopy(cfg)
    for key, value in entries.items():
        _set_dotted(out, key.split("."), copy.deepcopy(value), f"{source} ({PER_TASK}.{task})")
    return out


def _check_type(source: str, key: str, value: Any, types: tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in types:
        raise _fail(source, key, f"expected {'/'.join(t.__name__ for t in types)}, got bool {value!r}")
    if not isinstance(value, types):
        names = "/".join(t.__name__ for t in types)
        raise _fail(source, key, f"expected {names}, got {type(value).__name__} {value!r}")


def validate_config(cfg: Mapping[str, Any], source: str = "<config>") -> None:
    """Raise :class:`ConfigError` naming ``source`` and the key for any invalid entry."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(cfg).__name__}")
    for section in SECTIONS:
        if section not in cfg:
            raise _fail(source, section, "missing section")
        if not isinstance(cfg[section], Mapping):
            raise _fail(source, section, f"must be a mapping, got {type(cfg[section]).__name__}")
    unknown = sorted(set(cfg) - set(SECTIONS) - {"name", "description", PER_TASK})
    if unknown:
        raise _fail(source, unknown[0], f"unknown top-level section (known: {', '.join(SECTIONS)})")
    for section, fields in _SCHEMA.items():
        for key, (types, required) in fields.items():
            dotted = f"{section}.{key}"
            if key not in cfg[section]:
                if required:
                    raise _fail(source, dotted, "missing key")
                continue
            _check_type(source, dotted, cfg[section][key], types)
        extra = sorted(set(cfg[section]) - set(fields))
        if extra:
            raise _fail(source, f"{section}.{extra[0]}", "unknown key")
    _check_values(cfg, source)
    for task in _per_task_entries(cfg, source):  # every task's resolved config must be valid too
        resolved = apply_task_entries(cfg, task, source)
        resolved.pop(PER_TASK, None)
        validate_config(resolved, f"{source} ({PER_TASK}.{task})")


def _positive(cfg: Mapping, source: str, section: str, key: str, allow_zero: bool = False) -> None:
    v = cfg[section][key]
    if v < 0 or (v == 0 and not allow_zero):
        raise _fail(source, f"{section}.{key}", f"must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")


def _check_values(cfg: Mapping, source: str) -> None:
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    for key in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio",
                "ln_eps", "head_channels"):
        _positive(cfg, source, "model", key)
    _positive(cfg, source, "model", "head_convs", allow_zero=True)
    if m["img_size"] % m["patch_size"]:
        raise _fail(source, "model.patch_size",
                    f"{m['patch_size']} does not divide model.img_size {m['img_size']}")
    if m["embed_dim"] % m["num_heads"]:
        raise _fail(source, "model.num_heads",
                    f"{m['num_heads']} does not divide model.embed_dim {m['embed_dim']}")
    if m["num_classes"] is not None and m["num_classes"] < 2:
        raise _fail(source, "model.num_classes", f"must be >= 2 or null, got {m['num_classes']}")
    for key in ("pixel_mean", "pixel_std"):
        v = m[key]
        if len(v) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise _fail(source, f"model.{key}", f"must be a list of 3 numbers, got {v!r}")
    if any(x <= 0 for x in m["pixel_std"]):
        raise _fail(source, "model.pixel_std", f"entries must be > 0, got {m['pixel_std']!r}")
    for key in ("train_clips", "val_clips", "test_clips", "frames_per_clip"):
        _positive(cfg, source, "data", key)
    for key in ("steps", "batch_size", "lr", "eval_every", "ckpt_every", "log_every"):
        _positive(cfg, source, "train", key)
    for key in ("warmup_steps", "weight_decay", "grad_clip", "num_workers", "threads"):
        _positive(cfg, source, "train", key, allow_zero=True)
    if not 0 <= t["min_lr_ratio"] <= 1:
        raise _fail(source, "train.min_lr_ratio", f"must be in [0, 1], got {t['min_lr_ratio']!r}")
    betas = t["betas"]
    if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise _fail(source, "train.betas", f"must be two numbers in [0, 1), got {betas!r}")
    for task, w in t["loss_weights"].items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
            raise _fail(source, f"train.loss_weights.{task}", f"must be a number >= 0, got {w!r}")
    if t["depth_loss"] not in DEPTH_LOSSES:
        raise _fail(source, "train.depth_loss", f"{t['depth_loss']!r} not in {DEPTH_LOSSES}")
    if t["normals_loss"] not in NORMALS_LOSSES:
        raise _fail(source, "train.normals_loss", f"{t['normals_loss']!r} not in {NORMALS_LOSSES}")
    epw = t["edge_pos_weight"]
    if isinstance(epw, str) and epw != "balanced":
        raise _fail(source, "train.edge_pos_weight", f"must be 'balanced' or a number, got {epw!r}")
    if not isinstance(epw, str) and (isinstance(epw, bool) or epw <= 0):
        raise _fail(source, "train.edge_pos_weight", f"must be > 0, got {epw!r}")
    if cfg["eval"]["split"] not in SPLITS:
        raise _fail(source, "eval.split", f"{cfg['eval']['split']!r} not in {SPLITS}")
    _positive(cfg, source, "eval", "batch_size")
    if d["dataset"] != "synthetic":
        raise _fail(source, "data.dataset", f"only 'synthetic' is built in, got {d['dataset']!r}")


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (), task: str | None = None) -> dict:
    """Read ``path`` (YAML), apply ``per_task[task]`` (when ``task`` is given), then the
    ``dot.key=value`` overrides; validate and return a dict."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as fh:
            cfg = parse_yaml(fh.read())
    except FileNotFoundError as exc:
        raise ConfigError(f"{source}: no such config file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(cfg).__name__}")
    if task is not None:
        cfg = apply_task_entries(cfg, task, source)
    overrides = list(overrides)
    if overrides:
        cfg = apply_overrides(cfg, overrides, source=f"{source} (override)")
    validate_config(cfg, source)
    return cfg


def dump_config(cfg: Mapping[str, Any]) -> str:
    """YAML text of a config (stable key order) for checkpoints and run folders."""
    return yaml.safe_dump(dict(cfg), sort_keys=False)
