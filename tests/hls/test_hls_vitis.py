"""Vitis HLS flow (csim, csynth, cosim) of the three kernels; skipped without vitis_hls.

Run with `pytest -m vitis tests/hls/test_hls_vitis.py` after `source <Vitis>/settings64.sh`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from deltamtl.contract.ddr_image import ddr_cases_from_records, write_ddr_cases
from deltamtl.contract.vectors import generate_random_vectors, write_vectors
from deltamtl.hls.build import limits_from_params_header

from tests.helpers import seeding

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.vitis,
    pytest.mark.skipif(shutil.which("vitis_hls") is None,
                       reason="vitis_hls not on PATH (source <Vitis>/settings64.sh)"),
]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory) -> tuple[Path, Path]:
    limits = limits_from_params_header()
    seed = seeding.seed_for("vectors")
    print(f"seed {seed}")
    records = generate_random_vectors(limits, n_sequences=12, seed=seed)
    # In cosim the testbench's reset hook clears the C model, not the RTL's state, so the
    # file stops before the first reset after the start (the RTL starts out reset).
    later = [k for k, r in enumerate(records) if r.is_reset and k > 0]
    records = records[: later[0]] if later else records
    out = tmp_path_factory.mktemp("vitis")
    write_vectors(out / "v.dmtv", records, limits)
    write_ddr_cases(out / "v.dmtd", ddr_cases_from_records(records, limits,
                                                           np.random.default_rng(seed)), limits)
    return out / "v.dmtv", out / "v.dmtd"


@pytest.mark.parametrize("kernel", ["core", "fetch", "commit"])
def test_vitis_csim_csynth_cosim(kernel, vectors):
    vec = vectors[0] if kernel == "core" else vectors[1]
    proc = subprocess.run(["vitis_hls", "-f", "hls/tcl/run_hls.tcl", "-tclargs", kernel,
                           "csim,csynth,cosim", str(vec)], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=6 * 3600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    results = re.findall(r"RESULT (\d+) (\d+)", log)  # csim, then cosim
    assert results and all(int(p) == int(t) > 0 for p, t in results), log[-4000:]
    report = ROOT / "build" / "hls_prj" / kernel / "sol" / "syn" / "report" / f"{kernel}_csynth.rpt"
    assert report.is_file(), f"no synthesis report at {report}"
    cosim = ROOT / "build" / "hls_prj" / kernel / "sol" / "sim" / "report" / f"{kernel}_cosim.rpt"
    assert cosim.is_file() and "Pass" in cosim.read_text()
