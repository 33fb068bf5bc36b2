"""YAML experiment configs: loading, dotted overrides and validation.

A config has five sections:

* ``model``    ViT shape and heads (read by :mod:`deltamtl.model.training.vit`),
* ``data``     synthetic video split sizes,
* ``train``    optimiser, schedule, per-task loss weights, logging cadence,
* ``sharing``  computation-sharing (Diff-pruning / delta activation) settings, read by
  the multi-task recipes (every key optional; the recipes hold the defaults),
* ``eval``     evaluation batch size and split.

An optional sixth, ``per_task``, maps a task name to dotted keys that apply only when
that task is trained (its single-task model and its sharing steps): e.g. depth trains on
more clips than the other tasks.  ``load_config(path, overrides, task=...)`` applies them
after the file and before the command-line overrides, so ``--set`` always wins.

``load_config(path, overrides)`` reads the file, applies ``dot.key=value`` overrides
(values parsed as YAML, so ``train.lr=3e-4`` is a float and ``model.qkv_bias=false`` a
bool), validates the whole config against the strict typed schema in
:mod:`deltamtl.model.config_schema` (unknown keys, wrong types and out-of-range values
refused, nothing coerced) and returns a plain nested ``dict``.  Every error is one line
naming the file, the dotted key and the offending value (:class:`ConfigError`, a
:class:`deltamtl.contract.errors.UserInputError`).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from deltamtl.contract.errors import UserInputError
from deltamtl.model import config_schema as schema
from deltamtl.model.config_schema import DEPTH_LOSSES, NORMALS_LOSSES, SECTIONS, SPLITS  # noqa: F401
from deltamtl.model.tasks import TASKS

PER_TASK = "per_task"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does, and
    refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


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


class ConfigError(UserInputError):
    """A config file or override is malformed; the one-line message names file, key and value."""


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
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{source}: override {key}: cannot parse value {raw!r} as YAML: {problem}") from None
    return parts, value


def apply_overrides(cfg: dict, overrides: Iterable[str], source: str = "<overrides>") -> dict:
    """Return a copy of ``cfg`` with ``dot.key=value`` overrides applied (values parsed as YAML).

    The key must exist in ``cfg`` or in the schema (deltamtl.model.config_schema: e.g. an
    optional ``sharing`` key, or a task's ``train.loss_weights`` entry); a typo fails with
    the nearest valid key suggested. Values are checked when the config is validated.
    """
    out = copy.deepcopy(cfg)
    for item in overrides:
        parts, value = _parse_override(item, source)
        _set_dotted(out, parts, value, source)
    return out


def _set_dotted(cfg: dict, parts: list[str], value: Any, source: str) -> None:
    node = cfg
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict):
            raise _fail(source, ".".join(parts[:i]), "is not a mapping, cannot set a sub-key")
        if part not in node:
            if not schema.is_mapping(parts[: i + 1]):
                raise _fail(source, ".".join(parts[: i + 1]),
                            "no such key in the config" + schema.suggest(parts[: i + 1], tuple(node)))
            node[part] = {}  # an optional mapping of the schema (e.g. sharing.quant)
        node = node[part]
    if not isinstance(node, dict):
        raise _fail(source, ".".join(parts[:-1]), "is not a mapping, cannot set a sub-key")
    if parts[-1] not in node and not schema.known_key(parts):
        raise _fail(source, ".".join(parts),
                    "no such key in the config" + schema.suggest(parts, tuple(node)))
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
        if task not in TASKS:
            raise _fail(source, f"{PER_TASK}.{task}",
                        f"unknown task{schema.suggest([PER_TASK, str(task)])} (tasks: {', '.join(TASKS)})")
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


def validate_config(cfg: Mapping[str, Any], source: str = "<config>",
                    overridden: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` naming ``source``, the dotted key and the value of the first
    invalid entry (deltamtl.model.config_schema); every task's resolved config too.
    ``overridden``: dotted keys set on the command line (their errors say '(override)')."""
    try:
        schema.check_config(cfg)
    except schema.SchemaError as exc:
        key = re.sub(r"\[\d+\]", "", exc.key)
        hit = any(key == k or key.startswith(k + ".") or k.startswith(key + ".")
                  for k in overridden if key)
        raise ConfigError(f"{source}{' (override)' if hit else ''}: {exc}") from None
    for task in _per_task_entries(cfg, source):  # every task's resolved config must be valid too
        resolved = apply_task_entries(dict(cfg), task, source)
        resolved.pop(PER_TASK, None)
        validate_config(resolved, f"{source} ({PER_TASK}.{task})")


def validate_sections(cfg: Mapping[str, Any], sections: Iterable[str], source: str) -> None:
    """Validate only ``sections`` of ``cfg`` (e.g. the data/eval keys an evaluation may
    change in a checkpoint's config, whose other sections may predate the schema)."""
    for name in sections:
        try:
            schema.check_section(name, cfg.get(name))
        except schema.SchemaError as exc:
            raise ConfigError(f"{source}: {exc}") from None


def _read_yaml_file(source: str) -> Any:
    try:
        with open(source, encoding="utf-8") as fh:
            return parse_yaml(fh.read())
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a folder, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{source}: cannot read the config file (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc)
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None


def load_config(path: str | os.PathLike, overrides: Iterable[str] = (), task: str | None = None) -> dict:
    """Read ``path`` (YAML), apply ``per_task[task]`` (when ``task`` is given), then the
    ``dot.key=value`` overrides; validate and return a dict."""
    source = os.fspath(path)
    cfg = _read_yaml_file(source)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(cfg).__name__}")
    if task is not None:
        cfg = apply_task_entries(cfg, task, source)
    overrides = list(overrides)
    if overrides:
        cfg = apply_overrides(cfg, overrides, source=f"{source} (override)")
    validate_config(cfg, source, [o.split("=", 1)[0].strip() for o in overrides])
    return cfg


def dump_config(cfg: Mapping[str, Any]) -> str:
    """YAML text of a config (stable key order) for checkpoints and run folders."""
    return yaml.safe_dump(dict(cfg), sort_keys=False)
