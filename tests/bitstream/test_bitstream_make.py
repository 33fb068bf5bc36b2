"""`make bitstream` without the tools, the Makefile chain with a stand-in Vivado, and
`make package` on bitstream folders of placeholder files (never a real bitstream)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from deltamtl import package as pkg
from deltamtl.contract import platform as pf
from deltamtl.contract import platform_files as pff

ROOT = pf.ROOT
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make not installed")


def make(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run([MAKE, "--no-print-directory", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def bare_path(tmp_path: Path, tools: dict[str, str] | None = None) -> str:
    """A PATH with the basic tools but no vivado/vitis_hls, plus the stand-ins given."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name, script in (tools or {}).items():
        exe = bindir / name
        exe.write_text(script)
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    keep = [d for d in os.environ["PATH"].split(os.pathsep)
            if not any((Path(d) / t).exists() for t in ("vivado", "vitis_hls"))]
    return os.pathsep.join([str(bindir), *keep])


@pytest.mark.skipif(shutil.which("vivado") is not None, reason="vivado is installed here")
def test_bitstream_without_vivado_stops_early_with_a_clear_message(tmp_path: Path) -> None:
    run = make("bitstream", f"BITSTREAM_DIR={tmp_path / 'bits'}",
               f"VIVADO_OUT={tmp_path / 'viv'}", path=bare_path(tmp_path))
    assert run.returncode != 0
    assert "'vivado' not found on PATH" in run.stdout and "settings64.sh" in run.stdout
    assert not (tmp_path / "bits").exists() and not (tmp_path / "viv").exists()


def test_bitstream_without_vitis_hls_says_so(tmp_path: Path) -> None:
    path = bare_path(tmp_path, {"vivado": "#!/bin/sh\nexit 99\n"})
    for impl in pf.IMPLS:
        run = make("bitstream", f"IMPL={impl}", f"BITSTREAM_DIR={tmp_path / 'bits'}",
                   f"VIVADO_OUT={tmp_path / 'viv'}", path=path)
        assert run.returncode != 0
        assert "'vitis_hls' not found on PATH" in run.stdout and "SKIP_HLS=1" in run.stdout
        assert "fetch commit" in run.stdout and ("core" in run.stdout) == (impl == "hls")


@pytest.mark.parametrize("args, message", [
    (["IMPL=vhdl"], "IMPL=vhdl unknown"),
    (["CLOCK_MHZ=fast"], "CLOCK_MHZ=fast is not a number"),
])
def test_bitstream_refuses_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    run = make("bitstream", *args, f"VIVADO_OUT={tmp_path / 'viv'}", path=bare_path(tmp_path))
    assert run.returncode != 0 and message in run.stdout


# A stand-in for vivado: checks the arguments make passes, writes what the real flow writes
# (placeholder content), and exits with STUB_RC (3 = timing not met).
FAKE_VIVADO = r"""#!/bin/bash
set -e
echo "$@" > "$STUB_ARGS"
for a in "$@"; do case "$a" in out=*) out=${a#out=};; name=*) name=${a#name=};; esac; done
mkdir -p "$out"
echo placeholder > "$out/$name.bit"; echo '<EDKSYSTEM/>' > "$out/$name.hwh"
for r in utilization utilization_hier timing_summary timing_paths; do
  echo report > "$out/${name}_$r.rpt"; done
echo "timing met" > "$out/${name}_summary.txt"
exit ${STUB_RC:-0}
"""


@pytest.mark.parametrize("impl, clock", [("hls", None), ("rtl", "250")])
def test_bitstream_chain_copies_the_pair_and_reports(tmp_path: Path, impl: str,
                                                     clock: str | None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = bare_path(tmp_path, {"vivado": FAKE_VIVADO})
    monkeypatch.setenv("STUB_ARGS", str(tmp_path / "args"))
    run = make("bitstream", f"IMPL={impl}", "SKIP_HLS=1", *([f"CLOCK_MHZ={clock}"] if clock
                                                            else []),
               f"BITSTREAM_DIR={tmp_path / 'bits'}", f"VIVADO_OUT={tmp_path / 'viv'}", path=path)
    assert run.returncode == 0, run.stdout + run.stderr
    args = (tmp_path / "args").read_text().split()
    assert args[:2] == ["-mode", "batch"] and "scripts/vivado/build_bitstream.tcl" in args
    assert f"impl={impl}" in args and f"name=deltamtl_{impl}" in args
    assert (f"clock_mhz={clock}" in args) if clock else not any(a.startswith("clock_mhz=")
                                                               for a in args)
    copied = sorted(p.name for p in (tmp_path / "bits").iterdir())
    name = f"deltamtl_{impl}"
    assert copied == sorted([f"{name}.bit", f"{name}.hwh", f"{name}_summary.txt"] +
                            [f"{name}_{r}.rpt" for r in ("timing_paths", "timing_summary",
                                                         "utilization", "utilization_hier")])


def test_bitstream_timing_failure_copies_nothing(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = bare_path(tmp_path, {"vivado": FAKE_VIVADO})
    monkeypatch.setenv("STUB_ARGS", str(tmp_path / "args"))
    monkeypatch.setenv("STUB_RC", "3")
    run = make("bitstream", "SKIP_HLS=1", f"BITSTREAM_DIR={tmp_path / 'bits'}",
               f"VIVADO_OUT={tmp_path / 'viv'}", path=path)
    assert run.returncode != 0
    assert not (tmp_path / "bits").exists()


# ---------------------------------------------------------------------------------------
# make package
# ---------------------------------------------------------------------------------------
def placeholder_bitstreams(folder: Path, name: str = "deltamtl_hls", timing: str = "met") -> Path:
    """A bitstream folder as `make bitstream` leaves it: placeholder .bit, the virtual .hwh
    of this platform, reports and a summary."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.bit").write_bytes(b"placeholder, not a bitstream\n")
    pff.write_hwh(folder / f"{name}.hwh")
    for r in ("utilization", "timing_summary"):
        (folder / f"{name}_{r}.rpt").write_text(f"{r} report\n")
    (folder / f"{name}_summary.txt").write_text(f"name {name}\nwns 0.1\ntiming {timing}\n")
    return folder


def test_make_package_builds_the_deployment_folder(tmp_path: Path) -> None:
    bits = placeholder_bitstreams(tmp_path / "bits")
    export = tmp_path / "bundle"
    export.mkdir()
    (export / "manifest.yaml").write_text("core_limits: {}\n")
    out = tmp_path / "pkg" / "deltamtl_zcu104"
    run = make("package", f"BITSTREAM_DIR={bits}", f"PACKAGE_DIR={out}", f"EXPORT_BUNDLE={export}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (out / "overlay" / "deltamtl_hls.bit").read_bytes() == b"placeholder, not a bitstream\n"
    assert (out / "overlay" / "deltamtl_hls.hwh").read_text() == (bits / "deltamtl_hls.hwh").read_text()
    assert sorted(p.name for p in (out / "overlay" / "reports").iterdir()) == [
        "deltamtl_hls_summary.txt", "deltamtl_hls_timing_summary.rpt",
        "deltamtl_hls_utilization.rpt"]
    assert (out / "export" / "manifest.yaml").exists()
    assert (out / "src" / "deltamtl" / "contract" / "platform.py").exists()
    assert (out / "src" / "deltamtl" / "host" / "runner.py").exists()
    assert (out / "src" / "deltamtl" / "model" / "export" / "quantized_model.py").exists()
    assert not list((out / "src").rglob("__pycache__"))
    pyproject = (out / "src" / "pyproject.toml").read_text()
    assert 'name = "deltamtl-board"' in pyproject and "torch" not in pyproject
    note = (out / "INSTALL.md").read_text()
    assert "pip install" in note and "overlay/deltamtl_hls.bit" in note
    assert f"{pf.zcu104().reset.base:#x}" in note
    sums = dict(reversed(line.split("  ", 1)) for line in (out / "SHA256SUMS").read_text().splitlines())
    for rel, digest in sums.items():
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
    assert "overlay/deltamtl_hls.bit" in sums and "INSTALL.md" in sums
    # nothing left beside it (built in a temporary folder, then renamed)
    assert [p.name for p in out.parent.iterdir()] == ["deltamtl_zcu104"]


def test_package_installs_with_pip_and_imports(tmp_path: Path) -> None:
    """The host package as the board would install it (no dependencies fetched)."""
    bits = placeholder_bitstreams(tmp_path / "bits")
    out = pkg.build(bits, tmp_path / "pkg")
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--no-build-isolation", "--target", str(target), str(out / "src")],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    probe = subprocess.run([sys.executable, "-c",
                            "import deltamtl.contract.platform as p, deltamtl.host.runner;"
                            "print(p.__file__); print(hex(p.zcu104().reset.base))"],
                           env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path,
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines()[0].startswith(str(target))


def test_package_picks_the_only_pair_or_asks_for_a_name(tmp_path: Path) -> None:
    bits = placeholder_bitstreams(tmp_path / "bits", "deltamtl_rtl")
    assert pkg.main(["--bitstreams", str(bits), "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "overlay" / "deltamtl_rtl.hwh").exists()
    placeholder_bitstreams(bits, "deltamtl_hls")
    assert pkg.main(["--bitstreams", str(bits), "--out", str(tmp_path / "b")]) == 2
    run = make("package", f"BITSTREAM_DIR={bits}", f"PACKAGE_DIR={tmp_path / 'c'}", "IMPL=rtl")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "c" / "overlay" / "deltamtl_rtl.bit").exists()


@pytest.mark.parametrize("case", ["no_folder", "no_hwh", "no_bit", "timing_failed",
                                  "other_design", "not_xml", "no_export"])
def test_package_refuses_with_a_clear_message(tmp_path: Path, case: str) -> None:
    bits = tmp_path / "bits"
    args = ["--bitstreams", str(bits), "--name", "deltamtl_hls", "--out", str(tmp_path / "out")]
    expected = {"no_folder": "no such bitstream folder", "no_hwh": "lacks deltamtl_hls.hwh",
                "no_bit": "lacks deltamtl_hls.bit", "timing_failed": "timing FAILED",
                "other_design": "no register window for", "not_xml": "not a hardware hand-off",
                "no_export": "export bundle folder not found"}[case]
    if case != "no_folder":
        placeholder_bitstreams(bits, timing="FAILED" if case == "timing_failed" else "met")
    if case == "no_hwh":
        (bits / "deltamtl_hls.hwh").unlink()
    if case == "no_bit":
        (bits / "deltamtl_hls.bit").unlink()
    if case == "other_design":
        text = (bits / "deltamtl_hls.hwh").read_text()
        (bits / "deltamtl_hls.hwh").write_text(text.replace("0xA0010000", "0xA0050000"))
    if case == "not_xml":
        (bits / "deltamtl_hls.hwh").write_text("placeholder\n")
    if case == "no_export":
        args += ["--export", str(tmp_path / "missing")]
    if case == "no_hwh":
        run = make("package", f"BITSTREAM_DIR={bits}", f"PACKAGE_DIR={tmp_path / 'out'}",
                   "BITSTREAM_NAME=deltamtl_hls")
        assert run.returncode != 0 and expected in run.stdout and "make bitstream" in run.stdout
    else:
        with pytest.raises(pkg.PackageError, match=expected):
            pkg.build(bits, tmp_path / "out", "deltamtl_hls",
                      tmp_path / "missing" if case == "no_export" else None)
        assert pkg.main(args) == 2
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
