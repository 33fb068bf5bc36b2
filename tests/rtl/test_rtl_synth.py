"""yosys synth_xilinx -family xcup: the DSP48E2 packing maps as claimed (fast), and the whole
core at the CI maxima synthesises with DSPs and block RAMs (slow; the board table is
`make rtl-synth`)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from deltamtl.rtl import sim
from deltamtl.rtl.yosys_synth import parse_stat, summarise, synth

pytestmark = pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not on PATH")


def test_mac_pair_is_one_dsp48e2(tmp_path):
    """Two int8 x int9 products sharing one operand take exactly one DSP48E2, no fabric
    multiplier (the packing of rtl/dm_mac_pair.sv)."""
    stat = tmp_path / "stat.txt"
    script = (f"read_verilog -sv {sim.RTL_DIR / 'dm_mac_pair.sv'}\n"
              "synth_xilinx -family xcup -top dm_mac_pair -noiopad\n"
              f"tee -q -o {stat} stat\n")
    proc = subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True,
                          check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = summarise(parse_stat(stat.read_text()))
    assert summary["DSP48E2"] == 1, summary
    assert summary["LUT"] < 60, summary  # only the sign-correction adder in fabric


@pytest.mark.slow
def test_core_ci_config_maps_to_dsp_and_bram(tmp_path):
    row = synth(sim.CI_LIMITS, uram=False, out_dir=tmp_path)
    s = row["summary"]
    lanes = sim.CI_LIMITS.lanes
    # L/2 MAC pairs and 8 requantisers (32x16 bits: two DSPs each)
    assert s["DSP48E2"] >= lanes // 2 + 8, s
    assert s["BRAM36"] > 0, s
