"""Helpers of the export-bundle tests: copy a bundle, edit its manifest and arrays."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from deltamtl.model.export.bundle import MANIFEST

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copyfile)
    return dst


def manifest(path: Path) -> dict[str, Any]:
    return yaml.load((path / MANIFEST).read_text(), Loader=_LOADER)


def save_manifest(path: Path, m: Any) -> None:
    (path / MANIFEST).write_text(yaml.dump(m, Dumper=_DUMPER, sort_keys=False))


def array_file(path: Path, m: dict, key: str) -> Path:
    return path / m["arrays"][key]["file"]


def read_array(path: Path, m: dict, key: str) -> np.ndarray:
    ent = m["arrays"][key]
    return np.fromfile(path / ent["file"], dtype=ent["dtype"]).reshape(ent["shape"])


def rewrite_array(path: Path, m: dict, key: str, array: np.ndarray) -> None:
    """Replace an array's bytes and fix its checksum in ``m`` (a well-formed, bad file)."""
    data = np.ascontiguousarray(array, dtype=m["arrays"][key]["dtype"]).tobytes()
    (path / m["arrays"][key]["file"]).write_bytes(data)
    m["arrays"][key]["sha256"] = hashlib.sha256(data).hexdigest()


def tree_digest(path: Path) -> str:
    """One digest of every file under ``path`` (names and bytes): exactly-equal bundles."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(path).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()
