"""What every section shares: the output folder, the command line, provenance of figures.

Every figure carries the command and the configuration that produced it, twice: printed
on the PNG itself (a footer) and in the markdown caption. Files are written atomically
(``deltamtl.contract.atomic``).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deltamtl.contract.atomic import atomic_write_with

REPO = Path(__file__).resolve().parents[2]


def git_commit() -> str:
    """The tree's commit (and '+dirty' when files differ), or 'unknown' outside git."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@dataclass
class Figure:
    file: str
    caption: str
    section: str


@dataclass
class BenchContext:
    out: Path
    quick: bool
    argv: list[str]
    seed: int
    log: Callable[[str], None] = print
    figures: list[Figure] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def command(self) -> str:
        return "deltamtl bench " + " ".join(shlex.quote(a) for a in self.argv)

    def provenance(self, config: str | None = None) -> dict[str, Any]:
        return {"command": self.command, "config": config, "commit": git_commit(),
                "machine": machine()}

    def save_figure(self, section: str, fig: Any, name: str, caption: str, config: str | None) -> None:
        """PNG with a footer naming the command and config; registered for the markdown."""
        footer = f"{self.command}  |  config: {config or '-'}  |  commit {git_commit()}"
        fig.text(0.01, 0.005, footer, fontsize=6, color="0.35", ha="left", va="bottom")
        path = self.out / name
        atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110,
                                                        bbox_inches="tight"), suffix=".png")
        self.figures.append(Figure(name, f"{caption} (command: `{self.command}`; config: "
                                         f"`{config or '-'}`)", section))

    def saver(self, section: str, config: str | None) -> Callable[[Any, Path, str], None]:
        """A ``save(fig, path, caption)`` for plotting helpers that know only a path."""
        return lambda fig, path, caption: self.save_figure(section, fig, Path(path).name, caption, config)


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"load average {load:.1f} at start")
