"""Replacing a bundle cannot lose data: a failure or interrupt injected at each filesystem
step of write_bundle leaves the path holding exactly the old bundle or exactly the new one,
and leftovers are cleaned (or the old bundle restored) by recover_bundle / the next write."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from deltamtl.model.export.bundle import BundleError, load_bundle, recover_bundle, write_bundle

from tests.model.bundle_helpers import copy_bundle, tree_digest

pytestmark = pytest.mark.quant

# every filesystem call write_bundle makes: (owner, attribute)
STEPS = [(tempfile, "mkdtemp"), (Path, "mkdir"), (Path, "write_bytes"), (Path, "write_text"),
         (os, "chmod"), (os, "replace"), (shutil, "rmtree")]


class Injected(OSError):
    pass


def _counting(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, fail_at: int | None,
              exc: type[BaseException], persistent: bool = False) -> list[int]:
    real = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        n = calls[0]
        calls[0] += 1
        if fail_at is not None and (n == fail_at or (persistent and n > fail_at)):
            raise exc(f"injected failure of {name} call {n}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


@pytest.fixture(scope="module")
def models(mini_bundle: Path):
    qm = load_bundle(mini_bundle)
    return qm, {"v": "old"}, {"v": "new"}


@pytest.fixture(scope="module")
def digests(models, tmp_path_factory: pytest.TempPathFactory):
    qm, old, new = models
    d = tmp_path_factory.mktemp("ref")
    ref_old, ref_new = write_bundle(qm, d / "old", extra=old), write_bundle(qm, d / "new", extra=new)
    return ref_old, tree_digest(ref_old), tree_digest(ref_new)


def _calls_per_write(models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    qm, old, new = models
    write_bundle(qm, tmp_path / "count", extra=old)
    counters = {}
    with monkeypatch.context() as mp:
        for owner, name in STEPS:
            counters[name] = _counting(mp, owner, name, None, Injected)
        write_bundle(qm, tmp_path / "count", extra=new)
    return {k: v[0] for k, v in counters.items()}


@pytest.mark.parametrize("exc", [Injected, KeyboardInterrupt])
def test_failure_at_each_step_leaves_old_or_new(models, digests, exc, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    qm, _, new = models
    ref_old, d_old, d_new = digests
    counts = _calls_per_write(models, tmp_path, monkeypatch)
    assert counts["replace"] == 2 and counts["write_bytes"] > 10
    tried = 0
    for owner, name in STEPS:
        c = counts[name]
        for n in sorted({0, c // 2, c - 1} if c > 3 else set(range(c))):
            for persistent in (False, True) if name == "replace" else (False,):
                out = copy_bundle(ref_old, tmp_path / f"t{tried}" / "bundle")
                with monkeypatch.context() as mp:
                    _counting(mp, owner, name, n, exc, persistent)
                    with pytest.raises(exc):
                        write_bundle(qm, out, extra=new)
                recover_bundle(out)  # what the next write does first
                assert tree_digest(out) in (d_old, d_new), (name, n, persistent)
                assert sorted(p.name for p in out.parent.iterdir()) == ["bundle"], (name, n)
                load_bundle(out)
                tried += 1
    assert tried >= 12


def test_killed_between_renames_is_recovered(models, digests, tmp_path: Path) -> None:
    qm, _, new = models
    ref_old, d_old, d_new = digests
    out = copy_bundle(ref_old, tmp_path / "bundle")
    aside = tmp_path / ".bundle.old-dead"
    os.replace(out, aside)  # the state a SIGKILL between the two renames leaves
    with pytest.raises(BundleError, match=r"bundle: not a bundle directory \(an interrupted write "
                       r"left the previous bundle at .*\.bundle\.old-dead"):
        load_bundle(out)
    (tmp_path / ".bundle.tmp-dead").mkdir()  # and an unfinished temporary directory
    assert recover_bundle(out) == out
    assert tree_digest(out) == d_old and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    write_bundle(qm, out, extra=new)
    assert tree_digest(out) == d_new and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
