"""Property tests: a corrupted bundle is refused with a one-line BundleError naming a file
of the bundle, or it loads and runs a frame on the golden runner -- never another exception.

Mutations: manifest values replaced by values of other types and ranges, keys deleted or
added, manifest bytes flipped or truncated; array bytes flipped, files truncated or padded,
elements rewritten with a matching checksum (so the value checks run), files renamed,
extra files, symlinks inside and outside the bundle. Fast tier: a bounded number of examples
from the session seed; ``-m slow``: 1000.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from deltamtl.host.runner import GoldenRunner
from deltamtl.model.export.bundle import MANIFEST, BundleError, load_bundle
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.helpers.seeding import SEED
from tests.model.bundle_helpers import copy_bundle, manifest, save_manifest

pytestmark = pytest.mark.quant

FAST_EXAMPLES = 40
SLOW_EXAMPLES = 1000

VALUES = st.one_of(
    st.integers(-(1 << 40), 1 << 40), st.integers(-3, 300), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.none(), st.text(max_size=12), st.just("../../etc/passwd"),
    st.lists(st.integers(-2, 5), max_size=4), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _parent(m: Any, path: tuple) -> Any:
    for p in path[:-1]:
        m = m[p]
    return m


def _files(b: Path) -> list[Path]:
    return sorted(p for p in b.rglob("*.bin") if p.is_file() and not p.is_symlink())


@st.composite
def mutations(draw) -> list[tuple]:
    kinds = st.sampled_from(["set", "delete", "add_key", "manifest_bytes", "flip", "truncate",
                             "pad", "element", "rename", "extra", "symlink_out", "symlink_in"])
    return draw(st.lists(st.tuples(kinds, st.integers(0, 1 << 30), st.integers(0, 1 << 30), VALUES),
                         min_size=1, max_size=3))


def _apply(b: Path, m: dict, mutation: tuple) -> bool:
    """Apply one mutation; returns True if the manifest dict must be saved."""
    kind, i, j, value = mutation
    files = _files(b)
    f = files[i % len(files)] if files else None
    if kind in ("set", "delete", "add_key"):
        paths = _paths(m)
        path = paths[i % len(paths)]
        parent = _parent(m, path)
        if kind == "set":
            parent[path[-1]] = value
        elif kind == "delete":
            parent.pop(path[-1]) if isinstance(parent, dict) else parent.pop(path[-1])
        elif isinstance(parent, dict):
            parent[f"k{j % 7}"] = value
        return True
    if kind == "manifest_bytes":
        data = bytearray((b / MANIFEST).read_bytes())
        pos = i % len(data)
        if j % 2:
            data[pos] ^= 1 + j % 255
        else:
            del data[pos:]
        (b / MANIFEST).write_bytes(bytes(data))
        return False
    if f is None:
        return False
    data = bytearray(f.read_bytes())
    if kind == "flip" and data:
        data[i % len(data)] ^= 1 + j % 255
        f.write_bytes(bytes(data))
    elif kind == "truncate":
        f.write_bytes(bytes(data[: j % (len(data) + 1)]))
    elif kind == "pad":
        f.write_bytes(bytes(data) + b"\0" * (1 + j % 8))
    elif kind == "element":  # a new value with a matching checksum: the value checks must catch it
        key = next((k for k, e in m.get("arrays", {}).items()
                    if isinstance(e, dict) and b / str(e.get("file")) == f), None)
        if key is None:
            return False
        ent = m["arrays"][key]
        a = np.frombuffer(bytes(data), dtype=np.dtype(ent["dtype"])).copy()
        if a.size:
            raw = np.array([value if isinstance(value, int | float) else j]).astype(np.float64)
            with np.errstate(all="ignore"):
                a[i % a.size] = raw.astype(a.dtype)[0]
            new = a.tobytes()
            f.write_bytes(new)
            ent["sha256"] = hashlib.sha256(new).hexdigest()
            return True
    elif kind == "rename":
        f.rename(f.with_name(f"renamed{j % 3}.bin"))
    elif kind == "extra":
        (f.parent / f"extra{j % 3}.bin").write_bytes(bytes(data[:8]))
    elif kind == "symlink_out":
        outside = b.parent / f"outside{j % 3}.bin"
        outside.write_bytes(bytes(data))
        f.unlink()
        f.symlink_to(outside)
    elif kind == "symlink_in":
        other = files[j % len(files)]
        f.unlink()
        f.symlink_to(os.path.relpath(other, f.parent))
    return False


def _check(b: Path, muts: list[tuple]) -> str:
    m = manifest(b)
    save = False
    for mut in muts:
        save = _apply(b, m, mut) or save
    if save:
        save_manifest(b, m)
    try:
        qm = load_bundle(b)
    except BundleError as exc:
        msg = str(exc)
        assert "\n" not in msg, msg
        assert msg.startswith(str(b)), msg  # names the bundle's manifest or one of its files
        return "refused"
    frame = np.random.default_rng(SEED).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    with np.errstate(all="ignore"):
        out = GoldenRunner(qm).run_frame(frame)
    assert set(out) == set(qm.tasks)
    return "ran"


def _run(bundle: Path, factory: pytest.TempPathFactory, muts: list[tuple], tally: dict) -> None:
    work = factory.mktemp("fuzz")
    try:
        b = copy_bundle(bundle, work / "bundle")
        outcome = _check(b, muts)
        tally[outcome] = tally.get(outcome, 0) + 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


_FAST = settings(max_examples=FAST_EXAMPLES, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@seed(SEED)
@_FAST
@given(muts=mutations())
def test_corrupted_bundle_refused_or_runs(mini_bundle: Path, tmp_path_factory, muts) -> None:
    _run(mini_bundle, tmp_path_factory, muts, {})


@pytest.mark.slow
@seed(SEED)
@settings(_FAST, max_examples=SLOW_EXAMPLES)
@given(muts=mutations())
def test_corrupted_bundle_refused_or_runs_long(valid_bundle: Path, tmp_path_factory, muts) -> None:
    _run(valid_bundle, tmp_path_factory, muts, TALLY)
    print(f"fuzz tally: {TALLY}")  # -s shows the running count of outcomes


TALLY: dict[str, int] = {}


def test_valid_mini_bundle_runs(mini_bundle: Path, tmp_path_factory) -> None:
    tally: dict[str, int] = {}
    _run(mini_bundle, tmp_path_factory, [("extra_noop", 0, 0, None)], tally)
    assert tally == {"ran": 1}
