"""The stream word against the real ap_axi_sdata.h's enablement rules.

Without Vitis the kernels compile against the project's stand-in header
(hls/include/compat/ap_axi_sdata.h); it enforces the same static checks as AMD's header,
so a type Vitis HLS rejects ("Found mismatched enablement for DATA signal") fails here too
(docs/hls.md, "stream word")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from deltamtl.hls.build import HLS_DIR, ap_types_dir

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")


def _compile(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    src = tmp_path / "t.cpp"
    src.write_text(code)
    return subprocess.run(
        ["g++", "-std=c++17", "-fsyntax-only", "-Wno-unknown-pragmas", f"-I{HLS_DIR / 'include'}",
         f"-I{HLS_DIR / 'generated'}", "-isystem", str(ap_types_dir()), str(src)],
        capture_output=True, text=True, check=False)


def _axis(args: str, use: str = "w.data = 1;") -> str:
    return ("#include <ap_int.h>\n#include \"compat/ap_axi_sdata.h\"\n"
            f"void f() {{ hls::axis<{args}> w; {use} (void)w; }}\n")


def test_real_header_is_absent_so_the_stand_in_is_what_g_plus_plus_sees():
    assert not (ap_types_dir() / "ap_axi_sdata.h").exists()


def test_old_stream_word_fails_strict_enablement(tmp_path):
    proc = _compile(tmp_path, _axis("ap_uint<64>, 0, 0, 0, AXIS_ENABLE_LAST, true"))
    assert proc.returncode != 0
    assert "Found mismatched enablement for DATA signal" in proc.stderr


def test_fixed_stream_word_compiles(tmp_path):
    proc = _compile(tmp_path, _axis("ap_uint<64>, 0, 0, 0, AXIS_ENABLE_DATA | AXIS_ENABLE_LAST, true",
                                    "w.data = 1; w.last = 1;"))
    assert proc.returncode == 0, proc.stderr


def test_project_stream_word_is_the_fixed_one(tmp_path):
    code = ("#include \"dmtl_types.h\"\n#include <type_traits>\n"
            "static_assert(std::is_same<dmtl::axis_word, hls::axis<ap_uint<64>, 0, 0, 0,"
            " AXIS_ENABLE_DATA | AXIS_ENABLE_LAST, true>>::value, \"axis_word\");\n"
            "void f() { dmtl::axis_word w; w.data = 3; w.last = 1; (void)w; }\n")
    proc = _compile(tmp_path, code)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args, signal", [
    ("ap_uint<64>, 2, 0, 0, AXIS_ENABLE_DATA | AXIS_ENABLE_LAST, true", "USER"),
    ("ap_uint<64>, 0, 3, 0, AXIS_ENABLE_DATA | AXIS_ENABLE_LAST, true", "ID"),
    ("ap_uint<64>, 0, 0, 0, AXIS_ENABLE_DATA | AXIS_ENABLE_DEST, true", "DEST"),
])
def test_side_channel_width_and_enablement_must_agree(tmp_path, args, signal):
    proc = _compile(tmp_path, _axis(args))
    assert proc.returncode != 0
    assert f"Found mismatched enablement for {signal} signal" in proc.stderr


def test_non_strict_types_are_not_checked_but_a_disabled_last_is_unusable(tmp_path):
    assert _compile(tmp_path, _axis("ap_uint<64>, 0, 0, 0, AXIS_ENABLE_LAST, false",
                                    "w.data = 1; w.last = 1;")).returncode == 0
    proc = _compile(tmp_path, _axis("ap_uint<64>, 0, 0, 0, AXIS_ENABLE_DATA, true", "w.last = 1;"))
    assert proc.returncode != 0


def test_no_signal_enabled_fails(tmp_path):
    proc = _compile(tmp_path, _axis("ap_uint<64>, 0, 0, 0, 0, false"))
    assert proc.returncode != 0 and "No axis signals are enabled" in proc.stderr
