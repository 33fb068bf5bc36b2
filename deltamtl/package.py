"""Deployment folder for the ZCU104 (docs/board.md, "Copy to the board").

    deltamtl package [--bitstreams bitstreams/zcu104] [--name deltamtl_hls]
                               [--export BUNDLE_DIR] [--out build/package/deltamtl_zcu104]

`make package` runs it. The folder holds:

    overlay/<name>.bit, overlay/<name>.hwh   the PYNQ pair (same base name)
    overlay/reports/                         utilisation, timing and summary, when present
    export/                                  the model's export bundle (--export)
    src/                                     the host package (deltamtl + host) and a
                                             pyproject.toml for `pip install` on the board
    notebooks/                               *.ipynb found under notebooks/ and host/
    INSTALL.md, SHA256SUMS

It refuses (exit 2, nothing written) when the bitstream folder lacks the .bit/.hwh pair,
when the build's summary says timing failed, or when the .hwh does not describe this
platform's IPs (a bitstream of another version of the design).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from xml.etree import ElementTree as ET

from deltamtl import __version__
from deltamtl.contract import platform as pf

ROOT = pf.ROOT
DEFAULT_BITSTREAMS = ROOT / "bitstreams" / "zcu104"
DEFAULT_OUT = ROOT / "build" / "package" / "deltamtl_zcu104"
# What the board needs of the repository: the contract (with the platform), the host code,
# and model/ for the bundle's data structure (its torch modules are never imported there).
# Not hls/ or rtl/ (simulation only).
HOST_SOURCES = {"deltamtl": ROOT / "deltamtl", "deltamtl.contract": ROOT / "contract",
                "deltamtl.model": ROOT / "model", "deltamtl.host": ROOT / "host"}
NOTEBOOK_DIRS = (ROOT / "notebooks", ROOT / "host")
BOARD_DEPENDENCIES = ("numpy", "pyyaml")  # pynq comes with the board's image


class PackageError(RuntimeError):
    """The inputs cannot make a deployment folder; the message says what to do."""


def find_pair(folder: Path, name: str | None) -> tuple[Path, Path]:
    """<name>.bit and <name>.hwh in folder; without a name, the only pair there."""
    if not folder.is_dir():
        raise PackageError(f"{folder}: no such bitstream folder: run `make bitstream` first "
                           f"(needs Vivado, docs/board.md)")
    if name is None:
        names = sorted(b.stem for b in folder.glob("*.bit") if b.with_suffix(".hwh").exists())
        if len(names) != 1:
            found = ", ".join(names) or "none"
            raise PackageError(f"{folder}: {len(names)} .bit/.hwh pairs ({found}); "
                               f"name one with --name (make package BITSTREAM_NAME=...)")
        name = names[0]
    bit, hwh = folder / f"{name}.bit", folder / f"{name}.hwh"
    missing = [p.name for p in (bit, hwh) if not p.is_file()]
    if missing:
        raise PackageError(f"{folder} lacks {' and '.join(missing)}: PYNQ needs {name}.bit and "
                           f"{name}.hwh side by side; run `make bitstream` first (needs Vivado)")
    return bit, hwh


def check_summary(folder: Path, name: str) -> Path | None:
    summary = folder / f"{name}_summary.txt"
    if not summary.exists():
        return None
    fields = dict(line.split(" ", 1) for line in summary.read_text().splitlines() if " " in line)
    if fields.get("timing", "met") != "met":
        raise PackageError(f"{summary}: timing {fields['timing']} (WNS {fields.get('wns')} ns): "
                           f"this bitstream is not fit for the board")
    return summary


def check_hwh(hwh: Path, plat: pf.Platform) -> None:
    """The hand-off file must be XML naming this platform's addressable IPs at its addresses."""
    try:
        root = ET.parse(hwh).getroot()
    except ET.ParseError as exc:
        raise PackageError(f"{hwh}: not a hardware hand-off file ({exc})") from exc
    ranges = {(m.get("INSTANCE"), int(m.get("BASEVALUE", "0"), 16))
              for m in root.iter("MEMRANGE") if m.get("MEMTYPE") == "REGISTER"}
    wanted = {(inst, base) for inst, (base, _size) in plat.address_map().items()}
    missing = sorted(f"{inst}@{base:#x}" for inst, base in wanted - ranges)
    if missing:
        raise PackageError(f"{hwh}: no register window for {', '.join(missing)}: the bitstream "
                           f"is not of this platform (contract/platform.py); rebuild it")


def _copy_tree(src: Path, dst: Path) -> None:
    caches = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")

    def ignore(folder: str, names: list[str]) -> set[str]:
        # deltamtl/ links each subpackage folder (docs/architecture.md); HOST_SOURCES
        # copies the ones the board needs from where they live
        return set(caches(folder, names)) | {n for n in names if (Path(folder) / n).is_symlink()}

    shutil.copytree(src, dst, ignore=ignore)


def _pyproject(src: Path) -> str:
    # every folder with an __init__.py under the staged sources, subpackages included
    found = sorted(".".join(d.relative_to(src).parts) for d in src.rglob("*")
                   if d.is_dir() and (d / "__init__.py").exists())
    packages = ", ".join(f'"{p}"' for p in found)
    dirs = ", ".join(f'"{p}" = "{p.replace(".", "/")}"' for p in found)
    deps = ", ".join(f'"{d}"' for d in BOARD_DEPENDENCIES)
    return (f"# Written by deltamtl.package: the host side of deltamtl for the board.\n"
            f"[build-system]\nrequires = [\"setuptools>=61\"]\n"
            f"build-backend = \"setuptools.build_meta\"\n\n"
            f"[project]\nname = \"deltamtl-board\"\nversion = \"{__version__}\"\n"
            f"requires-python = \">=3.8\"\ndependencies = [{deps}]\n\n"
            f"[tool.setuptools]\npackages = [{packages}]\n"
            f"package-dir = {{{dirs}}}\n")


def _install_note(name: str, has_export: bool, notebooks: list[str]) -> str:
    plat = pf.zcu104()
    lines = [
        f"# deltamtl on the ZCU104 ({name})", "",
        "Copy this folder to the board (PYNQ image for the ZCU104), then on the board:", "",
        "```",
        "scp -r deltamtl_zcu104 xilinx@<board>:~/      # from the build machine",
        "sudo -i                                        # PYNQ's Python lives in its venv",
        "source /etc/profile.d/pynq_venv.sh",
        "pip install --no-build-isolation ~xilinx/deltamtl_zcu104/src",
        "sha256sum -c SHA256SUMS                        # inside the folder: nothing damaged",
        "```", "",
        "Load the overlay from Python (as root, in PYNQ's venv):", "",
        "```python",
        "from pynq import Overlay",
        f"ol = Overlay('overlay/{name}.bit')   # {name}.hwh must sit beside it",
        f"ol.{plat.kernel('fetch').instance}, ol.{plat.kernel('commit').instance}"
        f", ol.{plat.reset.gpio_instance}",
        "```", "",
        f"Recovering a hung kernel: write 1 then 0 to bit {plat.reset.bit} of "
        f"{plat.reset.gpio_instance} (channel {plat.reset.channel}, "
        f"{plat.reset.base + plat.reset.data_offset:#x}).",
        "",
    ]
    lines.append("The export bundle is in `export/`." if has_export else
                 "No export bundle was packaged (make package EXPORT_BUNDLE=<dir>).")
    lines.append(f"Notebooks: {', '.join(notebooks)}." if notebooks else
                 "No notebook was found in the repository (notebooks/, host/).")
    lines += ["", "Nothing in this folder has been run on a board by the build machine "
              "(docs/board.md)."]
    return "\n".join(lines) + "\n"


def _sha256sums(folder: Path) -> str:
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append(f"{digest}  {path.relative_to(folder).as_posix()}")
    return "\n".join(rows) + "\n"


def build(bitstreams: Path, out: Path, name: str | None = None,
          export: Path | None = None) -> Path:
    """Make the deployment folder at `out` (replaced as a whole; built next to it first)."""
    plat = pf.zcu104()
    bit, hwh = find_pair(bitstreams, name)
    name = bit.stem
    summary = check_summary(bitstreams, name)
    check_hwh(hwh, plat)
    if export is not None and not export.is_dir():
        raise PackageError(f"{export}: export bundle folder not found (make export writes one)")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        overlay = stage / "overlay"
        overlay.mkdir()
        shutil.copy2(bit, overlay / bit.name)
        shutil.copy2(hwh, overlay / hwh.name)
        reports = sorted(bitstreams.glob(f"{name}_*.rpt"))
        if reports or summary:
            (overlay / "reports").mkdir()
            for rpt in reports + ([summary] if summary else []):
                shutil.copy2(rpt, overlay / "reports" / rpt.name)
        if export is not None:
            _copy_tree(export, stage / "export")
        src = stage / "src"
        for package, folder in HOST_SOURCES.items():
            _copy_tree(folder, src / package.replace(".", "/"))
        (src / "pyproject.toml").write_text(_pyproject(src))
        notebooks = sorted({nb for d in NOTEBOOK_DIRS if d.is_dir() for nb in d.rglob("*.ipynb")
                            if ".ipynb_checkpoints" not in nb.parts})
        if notebooks:
            (stage / "notebooks").mkdir()
            for nb in notebooks:
                shutil.copy2(nb, stage / "notebooks" / nb.name)
        (stage / "INSTALL.md").write_text(
            _install_note(name, export is not None, [nb.name for nb in notebooks]))
        (stage / "SHA256SUMS").write_text(_sha256sums(stage))
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deltamtl package", description=__doc__.splitlines()[0])
    parser.add_argument("--bitstreams", type=Path, default=DEFAULT_BITSTREAMS,
                        help="folder with <name>.bit and <name>.hwh (make bitstream fills it)")
    parser.add_argument("--name", help="base name of the pair (default: the only pair there)")
    parser.add_argument("--export", type=Path, help="export bundle folder to include")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="deployment folder")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        out = build(args.bitstreams, args.out, args.name or None, args.export)
    except PackageError as exc:
        print(f"package: {exc}")
        return 2
    print(f"package: wrote {out} (copy it to the board: {out / 'INSTALL.md'})")
    return 0

