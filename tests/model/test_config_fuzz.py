"""Property tests of config validation: mutated configs, overrides and YAML text.

Every mutation of a shipped config (a value of another type or range, a deleted key, an
unknown key, a damaged file) either loads, with a value of the type the schema asks for
(nothing coerced), or fails with one ConfigError line that names the file and the key.
Never another exception. Budgets: fast tier a few seconds; ``-m slow`` the long run.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from deltamtl.model.config import ConfigError, load_config, validate_config
from hypothesis import event, given
from hypothesis import strategies as st

from tests.helpers.fuzz import fast, long, seeded

TINY = Path("configs/tiny.yaml")
BASE = yaml.safe_load(TINY.read_text())
SOURCE = "fuzz.yaml"

# a key whose error may be reported on the key that depends on it (cross-field rules)
DEPENDENTS = {
    "model.img_size": ("model.patch_size",),
    "model.embed_dim": ("model.num_heads",),
    "sharing.keyframe_interval": ("sharing.keyframe_offsets",),
    "model.depth": ("sharing.boundary",),
}
# keys whose values may change kind (null or a number instead of the shipped one)
NULLABLE = {"model.num_classes", "sharing.init_checkpoint", "sharing.max_delta_nnz",
            "sharing.report_val_clips", "sharing.report_test_clips", "sharing.base_checkpoint",
            "sharing.st_checkpoint", "sharing.out_root", "name", "description"}


def _leaves(node, prefix=()):
    """(path, value) of every leaf; per_task entries are leaves keyed by their dotted key."""
    if isinstance(node, dict) and (not prefix or prefix[0] != "per_task" or len(prefix) < 2):
        for k, v in node.items():
            yield from _leaves(v, (*prefix, k))
    elif isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k), v
    else:
        yield prefix, node


def _mappings(node, prefix=()):
    if isinstance(node, dict):
        yield prefix
        if not (prefix and prefix[0] == "per_task" and len(prefix) >= 2):
            for k, v in node.items():
                yield from _mappings(v, (*prefix, k))


LEAVES = [p for p, _v in _leaves(BASE)]
MAPPINGS = list(_mappings(BASE))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.integers(-3, 9),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2),
    st.text(max_size=8), st.sampled_from(["balanced", "auto", "l1", "berhu", "val", "depth"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=4),
                   st.dictionaries(st.text(max_size=6), scalars, max_size=3))


def _dotted(path: tuple) -> str:
    # per_task entries: the error names the dotted key inside the task's resolved config
    return path[2] if path[0] == "per_task" and len(path) == 3 else ".".join(map(str, path))


def _get(cfg, path):
    for part in path[:-1]:
        cfg = cfg[part]
    return cfg


def _type_ok(original, new, key: str) -> bool:
    """The strictness oracle: an accepted value has the kind the shipped one has."""
    if key in NULLABLE and (new is None or isinstance(new, (str, int)) and not isinstance(new, bool)):
        return True
    if key == "train.edge_pos_weight":
        return new == "balanced" or (type(new) in (int, float) and math.isfinite(new) and new > 0)
    if key == "sharing.boundary":
        return new == "auto" or isinstance(new, (list, dict))
    if isinstance(original, bool):
        return isinstance(new, bool)
    if isinstance(original, int):
        return type(new) is int
    if isinstance(original, float):
        return type(new) in (int, float) and math.isfinite(new)
    return type(new) is type(original)


def _check_error(exc: ConfigError, keys: tuple[str, ...], source: str = SOURCE) -> None:
    message = str(exc)
    assert "\n" not in message, message
    assert message.startswith(source), message
    assert any(k in message for k in keys), (keys, message)


mutations = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(LEAVES), values),
    st.tuples(st.just("delete"), st.sampled_from(LEAVES + MAPPINGS[1:]), st.none()),
    st.tuples(st.just("add"), st.sampled_from(MAPPINGS),
              st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8).map(lambda s: "x_" + s)),
)


def _check_mutation(mutation) -> None:
    op, path, arg = mutation
    cfg = copy.deepcopy(BASE)
    if op == "set":
        original = _get(cfg, path)[path[-1]]
        _get(cfg, path)[path[-1]] = arg
        keys = (_dotted(path), *DEPENDENTS.get(_dotted(path), ()))
    elif op == "delete":
        del _get(cfg, path)[path[-1]]
        keys = (_dotted(path),)
    else:
        _get(cfg, (*path, None))[arg] = 1
        keys = (".".join(map(str, (*path, arg))),)
    try:
        validate_config(cfg, SOURCE)
    except ConfigError as exc:
        event(f"{op}: refused")
        _check_error(exc, keys)
        return
    event(f"{op}: accepted")
    if op == "set":
        assert _type_ok(original, arg, _dotted(path)), (path, original, arg)
    if op == "add":
        raise AssertionError(f"unknown key {keys[0]} accepted")


@seeded("config mutations")
@fast(300)
@given(mutations)
def test_mutated_configs_load_or_name_the_key(mutation) -> None:
    _check_mutation(mutation)


@pytest.mark.slow
@seeded("config mutations, long")
@long(20000)
@given(mutations)
def test_mutated_configs_load_or_name_the_key_long(mutation) -> None:
    _check_mutation(mutation)


# -- --set overrides ------------------------------------------------------------------------
OVERRIDE_KEYS = [p for p in LEAVES if p[0] != "per_task"]
override_texts = st.one_of(
    st.sampled_from(["2.5", "'3'", "true", "null", "~", "-1", "0", "1e3", "[1, 2]", "{a: 1}",
                     ".nan", "-.inf", "", "yes", "0x10", "1_000", "[", "}", "'", "@x", "%"]),
    st.integers(-5, 10**6).map(str), st.floats(allow_nan=False).map(repr),
    st.text("abcxyz0123456789.-+:[]{}'\", ", max_size=10),
)


def _typo(key: str, data) -> str:
    i = data.draw(st.integers(0, len(key) - 1))
    return key[:i] + data.draw(st.sampled_from("xq_")) + key[i + 1:]


def _check_override(data) -> None:
    path = data.draw(st.sampled_from(OVERRIDE_KEYS))
    key = ".".join(path)
    if data.draw(st.integers(0, 4)) == 0:
        key = _typo(key, data)
    text = data.draw(override_texts)
    try:
        cfg = load_config(TINY, [f"{key}={text}"])
    except ConfigError as exc:
        event("override: refused")
        # the overridden key, or the key a cross-field rule reports (model.patch_size for
        # model.img_size): either way its section is named
        _check_error(exc, (key, key.split(".")[0]), source=str(TINY))
        return
    event("override: accepted")
    if key != ".".join(path):  # a typo that hit another valid key: nothing to compare
        return
    value = cfg
    for part in key.split("."):
        value = value[part]
    assert _type_ok(_get(BASE, path)[path[-1]], value, ".".join(path)), (key, text, value)


@seeded("override mutations")
@fast(100)
@given(st.data())
def test_overrides_load_or_name_the_key(data) -> None:
    _check_override(data)


@pytest.mark.slow
@seeded("override mutations, long")
@long(5000)
@given(st.data())
def test_overrides_load_or_name_the_key_long(data) -> None:
    _check_override(data)


# -- damaged YAML text -------------------------------------------------------------------------
TEXT = TINY.read_bytes()
damage = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, len(TEXT)), st.just(b"")),
    st.tuples(st.just("flip"), st.integers(0, len(TEXT) - 1), st.binary(min_size=1, max_size=1)),
    st.tuples(st.just("insert"), st.integers(0, len(TEXT)),
              st.sampled_from([b":", b"-", b"\t", b"  ", b"\n", b"[", b"{", b"&a", b"*a", b"!!", b"\xff"])),
)


def _check_damaged_text(tmp_path: Path, change) -> None:
    op, at, byte = change
    data = TEXT[:at] if op == "truncate" else (
        TEXT[:at] + byte + TEXT[at + 1:] if op == "flip" else TEXT[:at] + byte + TEXT[at:])
    path = tmp_path / "damaged.yaml"
    path.write_bytes(data)
    try:
        load_config(path)
        event(f"{op}: loads")
    except ConfigError as exc:
        event(f"{op}: refused")
        message = str(exc)
        assert "\n" not in message and message.startswith(str(path)), message


@seeded("damaged yaml")
@fast(120)
@given(damage)
def test_damaged_yaml_text_loads_or_fails_in_one_line(tmp_path, change) -> None:
    _check_damaged_text(tmp_path, change)


@pytest.mark.slow
@seeded("damaged yaml, long")
@long(5000)
@given(damage)
def test_damaged_yaml_text_loads_or_fails_in_one_line_long(tmp_path, change) -> None:
    _check_damaged_text(tmp_path, change)
