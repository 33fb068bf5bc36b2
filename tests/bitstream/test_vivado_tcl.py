"""The Vivado scripts under tclsh: they parse, and run with every Vivado command replaced by a
recording stub; the recorded calls must build the block design deltamtl.contract.platform defines."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
from deltamtl.contract import platform as pf

TCLSH = shutil.which("tclsh")
pytestmark = pytest.mark.skipif(TCLSH is None, reason="tclsh not installed (apt-get install tcl)")
VIVADO_DIR = pf.ROOT / "scripts" / "vivado"
TCL_FILES = sorted(VIVADO_DIR.rglob("*.tcl")) + [pf.ROOT / "hls" / "tcl" / "run_hls.tcl"]

# Vivado / Vitis HLS commands the scripts may call; each is stubbed to record its arguments.
STUBBED = (
    "create_project get_board_parts set_property current_project update_ip_catalog add_files "
    "update_compile_order create_bd_design create_bd_cell apply_bd_automation get_bd_cells "
    "get_bd_pins get_bd_intf_pins connect_bd_net connect_bd_intf_net get_bd_addr_spaces "
    "get_bd_addr_segs assign_bd_address validate_bd_design save_bd_design get_property "
    "get_files generate_target make_wrapper current_fileset launch_runs wait_on_run get_runs "
    "open_run report_utilization report_timing_summary report_timing get_timing_paths "
    "open_project set_top open_solution set_part create_clock config_interface config_rtl "
    "csim_design csynth_design cosim_design export_design"
).split()
SEP_ARG, SEP_CALL = "\x1f", "\x1e"


def stub_prelude(record: Path, props: dict[str, str] | None = None,
                 board_parts: str = "xilinx.com:zcu104:part0:1.1") -> str:
    """TCL defining the stubs. get_* of a path return the path; get_property answers from
    props (PROPERTY or CONFIG.KEY); every call is appended to `record` as it happens."""
    prop_dict = " ".join(f"{{{k}}} {{{v}}}" for k, v in (props or {}).items())
    return f"""
set ::stub_props [dict create {prop_dict}]
set ::stub_record [open {{{record}}} w]
fconfigure $::stub_record -translation lf
proc stub_result {{cmd argv}} {{
    switch -- $cmd {{
        get_board_parts {{ return {{{board_parts}}} }}
        get_property {{
            set key [lindex $argv 0]
            if {{[dict exists $::stub_props $key]}} {{ return [dict get $::stub_props $key] }}
            return ""
        }}
        make_wrapper {{ return /stub/wrapper.v }}
        get_timing_paths {{ return stub_path }}
        current_project - current_fileset {{ return stub_$cmd }}
        get_bd_cells - get_bd_pins - get_bd_intf_pins - get_bd_addr_spaces - get_bd_addr_segs -
        get_runs - get_files {{ return [lindex $argv end] }}
        default {{ return "" }}
    }}
}}
foreach cmd {{{' '.join(STUBBED)}}} {{
    proc $cmd args [string map [list CMD $cmd] {{
        puts -nonewline $::stub_record "[join [concat CMD $args] "{SEP_ARG}"]{SEP_CALL}"
        flush $::stub_record
        return [stub_result CMD $args]
    }}]
}}
"""


def read_calls(record: Path) -> list[list[str]]:
    text = record.read_text()
    return [call.split(SEP_ARG) for call in text.split(SEP_CALL) if call]


def run_tcl(tmp_path: Path, body: str, props: dict[str, str] | None = None,
            board_parts: str = "xilinx.com:zcu104:part0:1.1", argv: Iterable[str] = (),
            script: Path | None = None) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    record = tmp_path / "calls.rec"
    main = tmp_path / "main.tcl"
    text = stub_prelude(record, props, board_parts) + body
    if script is not None:
        text += f"\nset argv {{{' '.join(argv)}}}\nset argc [llength $argv]\nsource {{{script}}}\n"
    main.write_text(text)
    proc = subprocess.run([TCLSH, str(main)], capture_output=True, text=True, cwd=pf.ROOT,
                          timeout=60)
    return proc, read_calls(record) if record.exists() else []


def block_design_calls(tmp_path: Path, impl: str, clock: str = "300",
                       board: int = 1) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    body = (f"source {{{pf.PLATFORM_TCL}}}\nsource {{{VIVADO_DIR / 'block_design.tcl'}}}\n"
            f"puts [dmtl_block_design {impl} {clock} {board}]\n")
    return run_tcl(tmp_path, body, props={"CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ":
                                          "299.997009"})


def opts(call: list[str], *names: str) -> dict[str, str]:
    return {n: call[call.index(n) + 1] for n in names if n in call}


def nets(calls: list[list[str]], kind: str) -> list[set[str]]:
    return [set(c[1:]) for c in calls if c[0] == kind]


# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", TCL_FILES, ids=lambda p: p.relative_to(pf.ROOT).as_posix())
def test_every_tcl_file_is_complete(path: Path) -> None:
    """Balanced braces/brackets/quotes: tclsh's own parser on the whole file."""
    probe = f"set fh [open {{{path}}}]; set t [read $fh]; close $fh; puts [info complete $t]"
    out = subprocess.run([TCLSH], input=probe, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1", f"{path} does not parse as complete TCL"


def test_procedure_files_source_cleanly(tmp_path: Path) -> None:
    body = "".join(f"source {{{p}}}\n" for p in (pf.PLATFORM_TCL, VIVADO_DIR / "block_design.tcl",
                                                   VIVADO_DIR / "reports.tcl"))
    body += "puts [info procs dmtl_*]\n"
    proc, calls = run_tcl(tmp_path, body)
    assert proc.returncode == 0, proc.stderr
    assert {"dmtl_block_design", "dmtl_reports", "dmtl_check_timing"} <= set(proc.stdout.split())
    assert calls == []  # sourcing defines procs and variables, nothing runs


@pytest.mark.parametrize("impl", pf.IMPLS)
def test_block_design_builds_every_cell_connection_address_clock_and_reset(
        tmp_path: Path, impl: str) -> None:
    proc, calls = block_design_calls(tmp_path, impl)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "299.997009"  # the PS's real clock is handed back
    p = pf.zcu104()
    names = [c[0] for c in calls]

    # cells: the PS, the kernels (HLS IP, or the RTL core as a module reference), the
    # control and data SmartConnects, two resets and the GPIO
    cells = {c[-1]: c for c in calls if c[0] == "create_bd_cell"}
    assert cells[p.ps_instance][cells[p.ps_instance].index("-vlnv") + 1] == pf.PS_VLNV.unversioned
    for k in p.kernels:
        call = cells[k.instance]
        if k.name == "core" and impl == "rtl":
            assert opts(call, "-type", "-reference") == {"-type": "module",
                                                          "-reference": p.core_module}
        else:
            assert opts(call, "-type", "-vlnv") == {"-type": "ip", "-vlnv": str(k.vlnv)}
    smcs = [p.ctrl_interconnect] + [k.smartconnect for k in p.kernels if k.smartconnect]
    for inst in smcs:
        assert cells[inst][cells[inst].index("-vlnv") + 1] == pf.SMARTCONNECT_VLNV.unversioned
    for inst in (p.periph_reset, p.kernel_reset):
        assert cells[inst][cells[inst].index("-vlnv") + 1] == pf.PROC_SYS_RESET_VLNV.unversioned
    assert cells[p.reset.gpio_instance][-2] == pf.AXI_GPIO_VLNV.unversioned
    assert "apply_bd_automation" in names  # board preset (board files present here)

    # every pin or interface named belongs to a created cell
    for c in calls:
        if c[0] in ("connect_bd_net", "connect_bd_intf_net"):
            for pin in c[1:]:
                assert pin.split("/")[0] in cells, f"{pin}: no such cell"

    # PS configuration: our ports, their widths and the PL clock on top of the preset
    ps_dicts = [c for c in calls if c[0] == "set_property" and c[-1] == p.ps_instance]
    cfg = dict(zip(*[iter(ps_dicts[-1][2].split())] * 2, strict=True))
    for key, value in p.ps_config().items():
        assert cfg[f"CONFIG.{key}"] == value, key
    assert cfg[f"CONFIG.{pf.PL0_FREQ_CONFIG}"] == "300"
    for k in p.kernels:
        if k.memory:
            assert cfg[f"CONFIG.PSU__SAXIGP{k.memory.hp.gp}__DATA_WIDTH"] == str(
                k.memory.data_bits)

    # interface nets
    intf = nets(calls, "connect_bd_intf_net")
    ps_hpm = f"{p.ps_instance}/M_AXI_HPM0_FPD"
    assert {ps_hpm, f"{p.ctrl_interconnect}/S00_AXI"} in intf
    ctrl_targets = {n.difference({x for x in n if x.startswith(p.ctrl_interconnect + "/M")}).pop()
                    for n in intf if any(x.startswith(p.ctrl_interconnect + "/M") for x in n)}
    expected_ctrl = {f"{k.instance}/{k.control}" for k in p.kernels if k.control}
    expected_ctrl.add(f"{p.reset.gpio_instance}/{p.reset.gpio_interface}")
    assert ctrl_targets == expected_ctrl
    ctrl_smc_cfg = [c for c in calls if c[0] == "set_property" and c[-1] == p.ctrl_interconnect]
    assert f"CONFIG.NUM_MI {len(expected_ctrl)}" in ctrl_smc_cfg[0][2]
    for k in p.kernels:
        if k.memory:
            assert {f"{k.instance}/{k.memory.interface}", f"{k.smartconnect}/S00_AXI"} in intf
            assert {f"{k.smartconnect}/M00_AXI", f"{p.ps_instance}/{k.memory.hp.interface}"} in intf
    for src, s_intf, dst, d_intf in p.streams():
        assert {f"{src}/{s_intf}", f"{dst}/{d_intf}"} in intf
    assert len(intf) == 1 + len(expected_ctrl) + 2 * 2 + len(p.streams())
    all_intf = [x for n in intf for x in n]
    assert len(all_intf) == len(set(all_intf)), "an interface is connected twice"

    # scalar nets: one clock net reaching every clock pin; resets
    scalar = nets(calls, "connect_bd_net")
    pins = [x for n in scalar for x in n]
    assert len(pins) == len(set(pins)), "a pin is on two nets"
    clock_net = next(n for n in scalar if f"{p.ps_instance}/pl_clk0" in n)
    expected_clk = {f"{k.instance}/{pf.CLOCK_PIN}" for k in p.kernels}
    expected_clk |= {f"{p.ps_instance}/{k.memory.hp.clock_pin}" for k in p.kernels if k.memory}
    expected_clk |= {f"{s}/aclk" for s in smcs}
    expected_clk |= {f"{p.ps_instance}/maxihpm0_fpd_aclk", f"{p.reset.gpio_instance}/s_axi_aclk",
                     f"{p.periph_reset}/slowest_sync_clk", f"{p.kernel_reset}/slowest_sync_clk"}
    assert clock_net == expected_clk | {f"{p.ps_instance}/pl_clk0"}
    assert {f"{p.ps_instance}/pl_resetn0", f"{p.periph_reset}/ext_reset_in",
            f"{p.kernel_reset}/ext_reset_in"} in scalar
    # the recovery line: GPIO bit -> aux reset of the kernels' reset block, polarity set
    assert {f"{p.reset.gpio_instance}/{p.reset.gpio_pin}", f"{p.kernel_reset}/aux_reset_in"} in scalar
    rst_cfg = [c for c in calls if c[0] == "set_property" and c[-1] == p.kernel_reset]
    assert rst_cfg[0][2].split() == [x for k, v in p.kernel_reset_config().items()
                                     for x in (f"CONFIG.{k}", v)]
    assert p.kernel_reset_config() == {"C_AUX_RESET_HIGH": str(int(p.reset.active_high))}
    gpio_cfg = [c for c in calls if c[0] == "set_property" and c[-1] == p.reset.gpio_instance]
    assert f"CONFIG.C_GPIO_WIDTH {p.reset.width}" in gpio_cfg[0][2]
    assert "CONFIG.C_ALL_OUTPUTS 1" in gpio_cfg[0][2]
    kernel_rst_net = next(n for n in scalar if f"{p.kernel_reset}/peripheral_aresetn" in n)
    assert kernel_rst_net == {f"{p.kernel_reset}/peripheral_aresetn"} | {
        f"{k.instance}/{pf.RESET_PIN}" for k in p.kernels}
    data_rst_net = next(n for n in scalar if f"{p.kernel_reset}/interconnect_aresetn" in n)
    assert data_rst_net == {f"{p.kernel_reset}/interconnect_aresetn"} | {
        f"{k.smartconnect}/aresetn" for k in p.kernels if k.smartconnect}
    assert {f"{p.periph_reset}/interconnect_aresetn", f"{p.ctrl_interconnect}/aresetn"} in scalar
    assert {f"{p.periph_reset}/peripheral_aresetn", f"{p.reset.gpio_instance}/s_axi_aresetn"} in scalar

    # address segments: registers on HPM0 at the platform's bases, DDR for each m_axi
    segs = {(opts(c, "-target_address_space")["-target_address_space"], c[-1]):
            (int(opts(c, "-offset")["-offset"], 0), int(opts(c, "-range")["-range"], 0))
            for c in calls if c[0] == "assign_bd_address"}
    ps_space = f"{p.ps_instance}/Data"
    expected_segs = {}
    for inst, (base, size) in p.address_map().items():
        intf_name = (p.reset.gpio_interface if inst == p.reset.gpio_instance
                     else p.kernel(inst.rsplit("_", 1)[0]).control)
        expected_segs[(ps_space, f"{inst}/{intf_name}/{pf.REG_SEGMENT}")] = (base, size)
    for k in p.kernels:
        if k.memory:
            for path, s in k.memory.hp.segments():
                expected_segs[(f"{k.instance}/{k.memory.address_space}",
                               f"{p.ps_instance}/{path}")] = (s.offset, s.range)
    assert segs == expected_segs

    # order: validate after the last connection and address, then save
    last_edit = max(i for i, n in enumerate(names)
                    if n in ("connect_bd_net", "connect_bd_intf_net", "assign_bd_address"))
    assert names.index("validate_bd_design") > last_edit
    assert names.index("save_bd_design") > names.index("validate_bd_design")


def test_block_design_without_board_files_skips_the_preset(tmp_path: Path) -> None:
    proc, calls = block_design_calls(tmp_path, "hls", board=0)
    assert proc.returncode == 0, proc.stderr
    assert "apply_bd_automation" not in [c[0] for c in calls]


def test_block_design_clock_is_configurable_and_checked(tmp_path: Path) -> None:
    proc, calls = block_design_calls(tmp_path, "hls", clock="250")
    assert proc.returncode == 0, proc.stderr
    ps_cfg = [c for c in calls if c[0] == "set_property" and c[-1] == pf.zcu104().ps_instance]
    assert f"CONFIG.{pf.PL0_FREQ_CONFIG} 250" in ps_cfg[-1][2]
    for bad in ("5000", "fast"):
        proc, _ = block_design_calls(tmp_path, "hls", clock=bad)
        assert proc.returncode != 0 and "CLOCK_MHZ" in proc.stderr
    proc, _ = block_design_calls(tmp_path, "vhdl")
    assert proc.returncode != 0 and "IMPL 'vhdl'" in proc.stderr


# ---------------------------------------------------------------------------------------
# build_bitstream.tcl end to end under stubs
# ---------------------------------------------------------------------------------------
def fake_tree(tmp_path: Path, kernels: Iterable[str]) -> tuple[Path, Path]:
    """An IP root with component.xml per kernel and the Vivado outputs the stubs 'produce'."""
    ip = tmp_path / "ip"
    for k in kernels:
        (ip / k).mkdir(parents=True)
        (ip / k / "component.xml").write_text("<component/>\n")
    out = tmp_path / "out"
    design = pf.DESIGN_NAME
    run_dir = tmp_path / "impl_1"
    run_dir.mkdir()
    (run_dir / f"{design}_wrapper.bit").write_bytes(b"placeholder bit\n")
    hwh = out / "prj" / f"{design}.gen" / "sources_1" / "bd" / design / "hw_handoff"
    hwh.mkdir(parents=True)
    (hwh / f"{design}.hwh").write_text("<EDKSYSTEM/>\n")
    return ip, out


def run_build(tmp_path: Path, impl: str, slack: str = "0.125",
              kernels: Iterable[str] = ("fetch", "core", "commit")):
    ip, out = fake_tree(tmp_path, kernels)
    props = {"PROGRESS": "100%", "SLACK": slack, "STATS.TNS": "0", "STATS.THS": "0",
             "DIRECTORY": str(tmp_path / "impl_1"),
             "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ": "299.997009"}
    argv = [f"impl={impl}", "clock_mhz=300", f"out={out}", f"ip={ip}",
            f"hls_prj={tmp_path / 'no_prj'}", "jobs=1"]
    proc, calls = run_tcl(tmp_path, "", props=props, argv=argv,
                          script=VIVADO_DIR / "build_bitstream.tcl")
    return proc, calls, out


@pytest.mark.parametrize("impl", pf.IMPLS)
def test_build_script_runs_the_whole_flow(tmp_path: Path, impl: str) -> None:
    proc, calls, out = run_build(tmp_path, impl)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [c[0] for c in calls]
    p = pf.zcu104()
    assert opts(calls[0], "-part") == {"-part": p.part}
    ips = next(c for c in calls if c[:2] == ["set_property", "ip_repo_paths"])[2].split()
    wanted = [k.name for k in p.kernels if not (impl == "rtl" and k.name == "core")]
    assert [Path(x).name for x in ips] == wanted
    added = {y for c in calls if c[0] == "add_files" for x in c[1:] for y in x.split()}
    rtl = {str(s.resolve()) for s in (*pf.rtl_sources(), pf.CORE_WRAPPER_V)}
    assert (rtl <= added) == (impl == "rtl")
    order = ["create_bd_design", "validate_bd_design", "make_wrapper", "launch_runs",
             "open_run", "report_utilization", "report_timing_summary"]
    assert [names.index(n) for n in order] == sorted(names.index(n) for n in order)
    runs = [c for c in calls if c[0] == "launch_runs"]
    assert runs[0][1] == "synth_1" and runs[1][1] == "impl_1" and "write_bitstream" in runs[1]
    name = f"deltamtl_{impl}"
    assert (out / f"{name}.bit").read_bytes() == b"placeholder bit\n"
    assert (out / f"{name}.hwh").exists()
    reports = {c[c.index("-file") + 1] for c in calls if "-file" in c}
    assert {str(out / f"{name}_{r}.rpt") for r in ("utilization", "utilization_hier",
                                                   "timing_summary", "timing_paths")} == reports
    summary = dict(line.split(" ", 1) for line in
                   (out / f"{name}_summary.txt").read_text().splitlines())
    assert summary["timing"] == "met" and summary["clock_mhz_actual"] == "299.997009"
    assert summary["impl"] == impl and summary["wns"] == "0.125"


def test_build_script_fails_when_timing_is_not_met(tmp_path: Path) -> None:
    proc, _calls, out = run_build(tmp_path, "hls", slack="-0.042")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "setup slack -0.042 ns < 0" in proc.stderr
    summary = (out / "deltamtl_hls_summary.txt").read_text()
    assert "timing FAILED" in summary  # reports stay for reading


def test_build_script_without_exported_ip_names_make_hls(tmp_path: Path) -> None:
    proc, calls, _out = run_build(tmp_path, "hls", kernels=("fetch",))
    assert proc.returncode == 1
    assert "no exported IP for 'core'" in proc.stderr and "make hls" in proc.stderr
    assert "create_bd_design" not in [c[0] for c in calls]


@pytest.mark.skipif(shutil.which("unzip") is None or shutil.which("zip") is None,
                    reason="zip/unzip not installed")
def test_build_script_unpacks_an_export_zip(tmp_path: Path) -> None:
    ip = tmp_path / "ip"
    src = tmp_path / "zsrc"
    src.mkdir()
    (src / "component.xml").write_text("<component/>\n")
    (ip / "fetch").mkdir(parents=True)
    subprocess.run(["zip", "-q", "-j", str(ip / "fetch" / "export.zip"), str(src / "component.xml")],
                   check=True)
    script = tmp_path / "helper.tcl"
    # the script up to its main block: the procs only
    text = (VIVADO_DIR / "build_bitstream.tcl").read_text().split("if {[catch {")[0]
    script.write_text(text.replace("[file dirname [file normalize [info script]]]",
                                   f"{{{VIVADO_DIR}}}"))
    body = (f"source {{{script}}}\n"
            f"puts [dmtl_ip_dir fetch {{{ip}}} {{{tmp_path / 'none'}}} {{{tmp_path / 'o'}}}]\n")
    proc, _ = run_tcl(tmp_path, body)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()) == (tmp_path / "o" / "ip_repo" / "fetch").resolve()
    assert (tmp_path / "o" / "ip_repo" / "fetch" / "component.xml").exists()


def test_run_hls_exports_the_platform_vlnv(tmp_path: Path) -> None:
    """hls/tcl/run_hls.tcl under stubs: the part and the export VLNV of the block design."""
    (tmp_path / "calls").mkdir()
    # exit reports instead of leaving; `file mkdir` (of build/ip/<kernel>) is not run: tests
    # never write into the tree
    body = ("proc exit {code} {puts \"exit $code\"}\nrename file _file\n"
            "proc file {sub args} {if {$sub eq {mkdir}} {return}; _file $sub {*}$args}\n")
    proc, calls = run_tcl(tmp_path / "calls", body,
                          argv=["fetch", "csynth,export"], script=pf.ROOT / "hls/tcl/run_hls.tcl")
    assert proc.returncode == 0 and "exit 0" in proc.stdout, proc.stdout + proc.stderr
    p = pf.zcu104()
    assert ["set_part", p.part] in calls
    export = next(c for c in calls if c[0] == "export_design")
    vlnv = p.kernel("fetch").vlnv
    assert opts(export, "-vendor", "-library", "-version") == {
        "-vendor": vlnv.vendor, "-library": vlnv.library, "-version": vlnv.version}
    top = next(c for c in calls if c[0] == "set_top")
    assert top[1] == vlnv.name


# ---------------------------------------------------------------------------------------
# with Vivado (skips here): the block design validates in the real tool
# ---------------------------------------------------------------------------------------
@pytest.mark.vivado
@pytest.mark.skipif(shutil.which("vivado") is None, reason="vivado not on PATH")
@pytest.mark.parametrize("impl", pf.IMPLS)
def test_block_design_validates_in_vivado(tmp_path: Path, impl: str) -> None:
    """Project, IP repository and block design up to validate_bd_design (no synthesis).
    Needs the HLS export (`make hls`) of the kernels the implementation uses."""
    kernels = [k.name for k in pf.zcu104().kernels if not (impl == "rtl" and k.name == "core")]
    missing = [k for k in kernels if not (pf.ROOT / "build" / "ip" / k).exists()
               and not (pf.ROOT / "build" / "hls_prj" / k / "sol" / "impl" / "ip").exists()]
    if missing:
        pytest.skip(f"no HLS export for {missing}: run `make hls`")
    helper = tmp_path / "procs.tcl"
    helper.write_text((VIVADO_DIR / "build_bitstream.tcl").read_text().split("if {[catch {")[0]
                      .replace("[file dirname [file normalize [info script]]]", f"{{{VIVADO_DIR}}}"))
    script = tmp_path / "bd.tcl"
    script.write_text(f"""source {{{helper}}}
set opts [dmtl_args {{impl={impl} out={tmp_path / 'out'}}}]
create_project -force bd_only {{{tmp_path / 'prj'}}} -part $dmtl(part)
set boards [lsort [get_board_parts -quiet $dmtl(board_part)]]
if {{[llength $boards]}} {{ set_property board_part [lindex $boards end] [current_project] }}
set dirs {{}}
foreach k {{{' '.join(kernels)}}} {{ lappend dirs [dmtl_ip_dir $k build/ip build/hls_prj {{{tmp_path}}}] }}
set_property ip_repo_paths $dirs [current_project]
update_ip_catalog
if {{"{impl}" eq "rtl"}} {{
    add_files -norecurse [lmap f [concat $dmtl(core,rtl_sources) [list $dmtl(core,wrapper)]] {{file normalize $f}}]
    update_compile_order -fileset sources_1
}}
puts "clock [dmtl_block_design {impl} $dmtl(clock_mhz_default) [llength $boards]]"
exit 0
""")
    run = subprocess.run(["vivado", "-mode", "batch", "-nojournal", "-nolog", "-source",
                          str(script)], cwd=pf.ROOT, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "ERROR:" not in run.stdout
