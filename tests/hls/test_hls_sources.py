"""Static rules for the synthesisable HLS sources (what g++ cannot check for Vitis)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deltamtl.contract.descriptor import DESC_MAGIC
from deltamtl.contract.registers import KERNEL_ARGS

HLS = Path(__file__).resolve().parents[2] / "hls"
KERNEL_SOURCES = [HLS / "core.cpp", HLS / "fetch.cpp", HLS / "commit.cpp",
                  *sorted((HLS / "include").glob("*.h"))]


def _synthesised(path: Path) -> list[tuple[int, str]]:
    """Lines outside `#ifndef __SYNTHESIS__` blocks, without // comments."""
    out, skip = [], 0
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("#ifndef __SYNTHESIS__"):
            skip += 1
        elif skip and line.startswith("#endif"):
            skip -= 1
        elif not skip:
            out.append((n, line.split("//")[0]))
    return out


@pytest.mark.parametrize("path", KERNEL_SOURCES, ids=lambda p: p.name)
def test_every_loop_is_annotated(path):
    lines = _synthesised(path)
    for k, (n, line) in enumerate(lines):
        if re.search(r"\bfor\s*\(", line):
            nxt = " ".join(text for _n, text in lines[k + 1: k + 3])
            assert "LOOP_TRIPCOUNT" in nxt or "UNROLL" in nxt, \
                f"{path.name}:{n}: loop without LOOP_TRIPCOUNT/UNROLL: {line.strip()}"


@pytest.mark.parametrize("path", KERNEL_SOURCES, ids=lambda p: p.name)
def test_no_dynamic_memory_or_hard_coded_contract(path):
    text = "\n".join(line for _n, line in _synthesised(path))
    for banned in (r"\bnew\b", r"\bmalloc\s*\(", r"\bstd::vector\b", r"\bdelete\b"):
        assert not re.search(banned, text), f"{path.name}: {banned} in synthesised code"
    # contract constants come from the generated headers, never typed in
    assert f"{DESC_MAGIC:#x}".lower() not in text.lower()
    assert "0x4c544d44" not in text.lower()


def test_fetch_and_commit_pin_the_register_map():
    for name in ("fetch", "commit"):
        text = (HLS / f"{name}.cpp").read_text()
        assert "DMTL_AXILITE_PRAGMAS" in text
        sig = re.search(rf"void {name}\(([^)]*)\)", text).group(1)
        args = [a.split()[-1].lstrip("*&") for a in sig.split(",")]
        assert args[:4] == [r.name for r in KERNEL_ARGS], (name, args)
        assert re.search(r"mode\s*=\s*m_axi port\s*=\s*gmem bundle\s*=\s*gmem", text)
    core = (HLS / "core.cpp").read_text()
    assert re.search(r"void core\(beat_stream& s_axis, beat_stream& m_axis\)", core)
    assert "ap_ctrl_none" in core
