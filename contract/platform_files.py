"""Files generated from the platform definition (:mod:`deltamtl.contract.platform`):
the TCL the Vivado scripts source, the Verilog top of the RTL core's module reference,
and the ``.hwh`` of the virtual ZCU104 (docs/board.md).

    deltamtl platform [--check | --hwh PATH [--clock-mhz MHZ] [--impl hls|rtl]]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path
from xml.etree import ElementTree as ET

from deltamtl.contract.atomic import atomic_write_text
from deltamtl.contract.packets import STREAM_DATA_BITS
from deltamtl.contract.platform import (
    AXI_GPIO_VLNV,
    BANNER,
    CLOCK_PIN,
    CLOCK_RANGE_MHZ,
    CONTROL_RANGE,
    CORE_WRAPPER_V,
    DEFAULT_CLOCK_MHZ,
    HLS_LIBRARY,
    HLS_VENDOR,
    HLS_VERSION,
    HPM_CLOCK_PIN,
    HPM_INTERFACE,
    IMPLS,
    IOPLL_MHZ,
    PL0_FREQ_CONFIG,
    PL_CLOCK_PIN,
    PL_RESETN_PIN,
    PLATFORM_TCL,
    PROC_SYS_RESET_VLNV,
    PS_ADDRESS_SPACE,
    PS_PRESET_RULE,
    PS_VLNV,
    REG_SEGMENT,
    RESET_PIN,
    ROOT,
    SMARTCONNECT_VLNV,
    SMC_MASTER_FORMAT,
    SMC_SLAVE_FORMAT,
    Platform,
    PlatformError,
    Vlnv,
    pl_clock_divisors,
    rtl_sources,
    zcu104,
)
from deltamtl.contract.registers import (
    CTRL_DONE,
    CTRL_IDLE,
    CTRL_READY,
    CTRL_START,
    KERNEL_ARGS,
    REG_CTRL,
    REG_GIE,
    REG_IER,
    REG_ISR,
    REG_STATUS_CTRL,
)


# ---------------------------------------------------------------------------------------
# platform.tcl
# ---------------------------------------------------------------------------------------
def _tcl_word(value: object) -> str:
    text = str(value)
    if text == "":
        return "{}"
    if any(ch in text for ch in ' \t\n{}[]$"\\;'):
        if "{" in text or "}" in text:
            raise PlatformError(f"cannot quote {text!r} for TCL")
        return "{" + text + "}"
    return text


def _tcl_list(values: Iterable[object]) -> str:
    return "{" + " ".join(_tcl_word(v) for v in values) + "}"


def platform_tcl(p: Platform | None = None) -> str:
    """``set dmtl(<key>) <value>`` lines the Vivado scripts read (docs/board.md lists keys)."""
    p = p or zcu104()
    rows: list[tuple[str, str]] = []

    def put(key: str, value: object) -> None:
        rows.append((key, value if isinstance(value, str) and value.startswith("{")
                     and value.endswith("}") else _tcl_word(value)))

    put("part", p.part)
    put("board_part", p.board_part_pattern)
    put("design", p.design_name)
    put("clock_mhz_default", f"{p.clock_mhz:g}")
    put("clock_range_mhz", _tcl_list(f"{x:g}" for x in CLOCK_RANGE_MHZ))
    put("hls_vendor", HLS_VENDOR)
    put("hls_library", HLS_LIBRARY)
    put("hls_version", HLS_VERSION)
    put("clock_pin", CLOCK_PIN)
    put("reset_pin", RESET_PIN)
    put("reg_segment", REG_SEGMENT)
    # processing system
    put("ps", p.ps_instance)
    put("ps,vlnv", PS_VLNV.unversioned)
    put("ps,config", _tcl_list(x for kv in p.ps_config().items() for x in kv))
    put("ps,preset_rule", PS_PRESET_RULE)
    put("ps,clock_config", PL0_FREQ_CONFIG)
    put("ps,clock_actual", "PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ")
    put("ps,hpm", HPM_INTERFACE)
    put("ps,hpm_clk", HPM_CLOCK_PIN)
    put("ps,hpm_base", f"{p.hpm_base:#x}")
    put("ps,hpm_size", f"{p.hpm_size:#x}")
    put("ps,address_space", PS_ADDRESS_SPACE)
    put("ps,pl_clk", PL_CLOCK_PIN)
    put("ps,pl_resetn", PL_RESETN_PIN)
    # infrastructure
    put("smartconnect,vlnv", SMARTCONNECT_VLNV.unversioned)
    put("proc_sys_reset,vlnv", PROC_SYS_RESET_VLNV.unversioned)
    put("axi_gpio,vlnv", AXI_GPIO_VLNV.unversioned)
    put("ctrl_smc", p.ctrl_interconnect)
    put("rst_periph", p.periph_reset)
    put("rst_kernels", p.kernel_reset)
    put("rst,ext_in", "ext_reset_in")
    put("rst,aux_in", "aux_reset_in")
    put("rst,slowest_clk", "slowest_sync_clk")
    put("rst,periph_aresetn", "peripheral_aresetn")
    put("rst,interconnect_aresetn", "interconnect_aresetn")
    put("smc,slave_format", SMC_SLAVE_FORMAT)
    put("smc,master_format", SMC_MASTER_FORMAT)
    put("smc,aclk", "aclk")
    put("smc,aresetn", "aresetn")
    put("gpio,clk", "s_axi_aclk")
    put("gpio,resetn", "s_axi_aresetn")
    # the kernel-reset line
    r = p.reset
    put("reset_gpio", r.gpio_instance)
    put("reset_gpio,interface", r.gpio_interface)
    put("reset_gpio,pin", r.gpio_pin)
    put("reset_gpio,width", r.width)
    put("reset_gpio,bit", r.bit)
    put("reset_gpio,active_high", int(r.active_high))
    put("reset_gpio,config", _tcl_list(x for kv in p.gpio_config().items() for x in kv))
    put("rst_kernels,config", _tcl_list(x for kv in p.kernel_reset_config().items() for x in kv))
    put("reset_gpio,base", f"{r.base:#x}")
    put("reset_gpio,range", f"{CONTROL_RANGE:#x}")
    # kernels
    put("kernels", _tcl_list(k.name for k in p.kernels))
    for k in p.kernels:
        put(f"{k.name},instance", k.instance)
        put(f"{k.name},vlnv", str(k.vlnv))
        put(f"{k.name},control", k.control or "")
        if k.control_base is not None:
            put(f"{k.name},control_base", f"{k.control_base:#x}")
            put(f"{k.name},control_range", f"{CONTROL_RANGE:#x}")
        put(f"{k.name},stream_in", k.stream_in or "")
        put(f"{k.name},stream_out", k.stream_out or "")
        m = k.memory
        put(f"{k.name},m_axi", m.interface if m else "")
        if m:
            put(f"{k.name},m_axi_bits", m.data_bits)
            put(f"{k.name},address_space", m.address_space)
            put(f"{k.name},smc", k.smartconnect)
            put(f"{k.name},hp", m.hp.interface)
            put(f"{k.name},hp_clk", m.hp.clock_pin)
            put(f"{k.name},hp_bits", m.hp.data_bits)
            put(f"{k.name},hp_segments", _tcl_list(
                f"{path} {s.offset:#x} {s.range:#x}" for path, s in m.hp.segments()))
    put("streams", _tcl_list(" ".join(s) for s in p.streams()))
    # IMPL=rtl
    put("core,module", p.core_module)
    put("core,module_vlnv", str(p.core_module_vlnv))
    put("core,wrapper", CORE_WRAPPER_V.relative_to(ROOT).as_posix())
    put("core,rtl_sources", _tcl_list(s.relative_to(ROOT).as_posix() for s in rtl_sources()))
    width = max(len(k) for k, _ in rows)
    lines = [f"# {BANNER}", "# Keys: docs/board.md. Source it, then read $dmtl(<key>).", ""]
    lines += [f"set dmtl({k}){' ' * (width - len(k))} {v}" for k, v in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# Verilog top of the RTL core for the block design (module references need Verilog or
# VHDL at the top, not SystemVerilog: docs/board.md)
# ---------------------------------------------------------------------------------------
def core_wrapper(p: Platform | None = None) -> str:
    p = p or zcu104()
    core = p.kernel("core")
    w = STREAM_DATA_BITS
    busifs = f"{core.stream_in}:{core.stream_out}"
    sin, sout = core.stream_in, core.stream_out

    def axis(name: str, sig: str, direction: str, bits: int = 1) -> str:
        rng = f" [{bits - 1}:0]" if bits > 1 else ""
        return (f'  (* X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 {name} {sig}" *)\n'
                f"  {direction} wire{rng} {name}_{sig}")

    ports = [
        f'  (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 {CLOCK_PIN} CLK" *)\n'
        f'  (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF {busifs}, ASSOCIATED_RESET '
        f'{RESET_PIN}" *)\n  input  wire {CLOCK_PIN}',
        f'  (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 {RESET_PIN} RST" *)\n'
        f'  (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)\n  input  wire {RESET_PIN}',
        axis(sin, "TDATA", "input ", w), axis(sin, "TVALID", "input "),
        axis(sin, "TREADY", "output"), axis(sin, "TLAST", "input "),
        axis(sout, "TDATA", "output", w), axis(sout, "TVALID", "output"),
        axis(sout, "TREADY", "input "), axis(sout, "TLAST", "output"),
    ]
    conns = [CLOCK_PIN, RESET_PIN] + [f"{s}_{sig}" for s in (sin, sout)
                                      for sig in ("TDATA", "TVALID", "TREADY", "TLAST")]
    return "\n".join([
        f"// {BANNER}",
        f"// Verilog top of {p.core_rtl_top} (rtl/) for the Vivado block design (IMPL=rtl):",
        "// a module reference needs a Verilog or VHDL top; the interface attributes give",
        "// Vivado the AXI4-Stream, clock and reset interfaces by the Vitis names.",
        f"module {p.core_module} (",
        ",\n".join(ports),
        ");",
        f"  {p.core_rtl_top} u_core (",
        ",\n".join(f"    .{n}({n})" for n in conns),
        "  );",
        "endmodule",
        "",
    ])


def generated_files(p: Platform | None = None) -> dict[Path, str]:
    p = p or zcu104()
    return {PLATFORM_TCL: platform_tcl(p), CORE_WRAPPER_V: core_wrapper(p)}


def write_atomic(path: Path, text: str) -> bool:
    """Write text via a temporary file in the same folder and a rename; True if it changed."""
    if path.exists() and path.read_text() == text:
        return False
    atomic_write_text(path, text)
    return True


# ---------------------------------------------------------------------------------------
# A minimal .hwh for PYNQ (the virtual ZCU104 and its tests)
# ---------------------------------------------------------------------------------------
def _prop(parent: ET.Element, name: str, value: object) -> None:
    ET.SubElement(parent, "PROPERTY", NAME=name, VALUE=str(value))


def _register(regs: ET.Element, name: str, offset: int, access: str, desc: str,
              fields: Sequence[tuple[str, int, int, str]] = ()) -> None:
    reg = ET.SubElement(regs, "REGISTER", NAME=name)
    _prop(reg, "DESCRIPTION", desc)
    _prop(reg, "ADDRESS_OFFSET", offset)
    _prop(reg, "SIZE", 32)
    _prop(reg, "ACCESS", access)
    _prop(reg, "IS_ENABLED", "true")
    _prop(reg, "RESET_VALUE", 0)
    if fields:
        fel = ET.SubElement(reg, "FIELDS")
        for fname, lsb, width, faccess in fields:
            f = ET.SubElement(fel, "FIELD", NAME=fname)
            _prop(f, "DESCRIPTION", fname)
            _prop(f, "ADDRESS_OFFSET", lsb)
            _prop(f, "ACCESS", faccess)
            _prop(f, "BIT_OFFSET", lsb)
            _prop(f, "BIT_WIDTH", width)


def kernel_registers() -> list[tuple[str, int, str, str]]:
    """(name, offset, access, description) of the fetch/commit s_axi_control registers in
    the naming of a Vitis HLS hand-off (64-bit arguments as <name>_1 / <name>_2)."""
    out = [("CTRL", REG_CTRL, "read-write", "Control signals"),
           ("GIER", REG_GIE, "read-write", "Global Interrupt Enable Register"),
           ("IP_IER", REG_IER, "read-write", "IP Interrupt Enable Register"),
           ("IP_ISR", REG_ISR, "read-write", "IP Interrupt Status Register")]
    for reg in KERNEL_ARGS:
        access = "write-only" if reg.direction == "in" else "read-only"
        if reg.bits == 64:
            out += [(f"{reg.name}_1", reg.offset, access, f"Data signal of {reg.name}"),
                    (f"{reg.name}_2", reg.offset + 4, access, f"Data signal of {reg.name}")]
        else:
            out.append((reg.name, reg.offset, access, f"Data signal of {reg.name}"))
    out.append(("status_ctrl", REG_STATUS_CTRL, "read-only", "Control signal of status"))
    return out


_CTRL_FIELDS = (("AP_START", CTRL_START.bit_length() - 1, 1, "read-write"),
                ("AP_DONE", CTRL_DONE.bit_length() - 1, 1, "read-only"),
                ("AP_IDLE", CTRL_IDLE.bit_length() - 1, 1, "read-only"),
                ("AP_READY", CTRL_READY.bit_length() - 1, 1, "read-only"))


def hwh_text(p: Platform | None = None, impl: str = "hls") -> str:
    """The hand-off XML: SYSTEMINFO, EXTERNALPORTS, one MODULE per addressable IP (with its
    register map) and the PS (PL clock parameters, HPM0 master, MEMORYMAP)."""
    p = p or zcu104()
    if impl not in IMPLS:
        raise PlatformError(f"impl {impl!r} not one of {IMPLS}")
    root = ET.Element("EDKSYSTEM", EDWVERSION="1.2", TIMESTAMP="virtual",
                      VIVADOVERSION="virtual (deltamtl.platform)")
    ET.SubElement(root, "SYSTEMINFO", ARCH="zynquplus", BOARD="xilinx.com:zcu104:part0:1.1",
                  DEVICE=p.part.split("-")[0], NAME=p.design_name,
                  PACKAGE=p.part.split("-")[1], SPEEDGRADE="-" + p.part.split("-")[2])
    ET.SubElement(root, "EXTERNALPORTS")
    modules = ET.SubElement(root, "MODULES")
    hpm = HPM_INTERFACE

    def module(instance: str, vlnv: Vlnv, extra: dict[str, str] | None = None) -> ET.Element:
        m = ET.SubElement(modules, "MODULE", FULLNAME=f"/{instance}", HWVERSION=vlnv.version,
                          INSTANCE=instance, IPTYPE="PERIPHERAL", IS_ENABLE="1",
                          MODCLASS="PERIPHERAL", MODTYPE=vlnv.name, VLNV=str(vlnv),
                          **(extra or {}))
        ET.SubElement(m, "DOCUMENTS")
        return m

    def slave(m: ET.Element, interface: str) -> None:
        bifs = ET.SubElement(m, "BUSINTERFACES")
        ET.SubElement(bifs, "BUSINTERFACE", BUSNAME=f"{p.ctrl_interconnect}_M", NAME=interface,
                      TYPE="SLAVE", VLNV="xilinx.com:interface:aximm:1.0")

    ranges: list[tuple[str, str, int]] = []  # (instance, slave interface, base)
    for k in p.kernels:
        if k.control is None:
            continue
        m = module(k.instance, k.vlnv)
        params = ET.SubElement(m, "PARAMETERS")
        ET.SubElement(params, "PARAMETER", NAME="C_S_AXI_CONTROL_BASEADDR",
                      VALUE=f"{k.control_base:#010x}")
        blocks = ET.SubElement(m, "ADDRESSBLOCKS")
        blk = ET.SubElement(blocks, "ADDRESSBLOCK", ACCESS="read-write", INTERFACE=k.control,
                            NAME=REG_SEGMENT, RANGE=str(CONTROL_RANGE), USAGE="register")
        regs = ET.SubElement(blk, "REGISTERS")
        for name, offset, access, desc in kernel_registers():
            _register(regs, name, offset, access, desc,
                      _CTRL_FIELDS if offset == REG_CTRL else ())
        slave(m, k.control)
        ranges.append((k.instance, k.control, k.control_base))
    # the core: no register window (ap_ctrl_none), listed so the file says which core it is
    core = p.kernel("core")
    module(core.instance, core.vlnv if impl == "hls" else p.core_module_vlnv)
    r = p.reset
    g = module(r.gpio_instance, AXI_GPIO_VLNV)
    params = ET.SubElement(g, "PARAMETERS")
    for name, value in (*p.gpio_config().items(), ("C_BASEADDR", f"{r.base:#010x}")):
        ET.SubElement(params, "PARAMETER", NAME=name, VALUE=str(value))
    blk = ET.SubElement(ET.SubElement(g, "ADDRESSBLOCKS"), "ADDRESSBLOCK", ACCESS="read-write",
                        INTERFACE=r.gpio_interface, NAME=REG_SEGMENT, RANGE=str(CONTROL_RANGE),
                        USAGE="register")
    regs = ET.SubElement(blk, "REGISTERS")
    _register(regs, "GPIO_DATA", r.data_offset, "read-write", "Channel 1 AXI GPIO Data")
    _register(regs, "GPIO_TRI", r.tri_offset, "read-write", "Channel 1 AXI GPIO 3-state")
    slave(g, r.gpio_interface)
    ranges.append((r.gpio_instance, r.gpio_interface, r.base))

    ps = module(p.ps_instance, PS_VLNV, {"IS_PL": "FALSE"})
    ps.set("MODTYPE", PS_VLNV.name)
    params = ET.SubElement(ps, "PARAMETERS")
    d0, d1 = pl_clock_divisors(p.clock_mhz)
    ps_params = {"PSU__FPGA_PL0_ENABLE": "1", "PSU__CRL_APB__PL0_REF_CTRL__SRCSEL": "IOPLL",
                 "PSU__CRL_APB__PL0_REF_CTRL__DIVISOR0": str(d0),
                 "PSU__CRL_APB__PL0_REF_CTRL__DIVISOR1": str(d1),
                 PL0_FREQ_CONFIG: f"{p.clock_mhz:g}",
                 "PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ": f"{IOPLL_MHZ / (d0 * d1):.6f}"}
    for i in (1, 2, 3):  # PYNQ reads all four PL clocks
        ps_params.update({f"PSU__FPGA_PL{i}_ENABLE": "0",
                          f"PSU__CRL_APB__PL{i}_REF_CTRL__SRCSEL": "IOPLL",
                          f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR0": "15",
                          f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR1": "1"})
    ps_params.update(p.ps_config())
    for name, value in ps_params.items():
        ET.SubElement(params, "PARAMETER", NAME=name, VALUE=value)
    bifs = ET.SubElement(ps, "BUSINTERFACES")
    ET.SubElement(bifs, "BUSINTERFACE", BUSNAME=f"{p.ps_instance}_{hpm}",
                  DATAWIDTH=str(p.hpm_data_bits), NAME=hpm, TYPE="MASTER",
                  VLNV="xilinx.com:interface:aximm:1.0")
    mmap = ET.SubElement(ps, "MEMORYMAP")
    for instance, interface, base in ranges:
        ET.SubElement(mmap, "MEMRANGE", ADDRESSBLOCK=REG_SEGMENT, BASENAME="C_BASEADDR",
                      BASEVALUE=f"{base:#010X}".replace("0X", "0x"), HIGHNAME="C_HIGHADDR",
                      HIGHVALUE=f"{base + CONTROL_RANGE - 1:#010X}".replace("0X", "0x"),
                      INSTANCE=instance, IS_DATA="TRUE", IS_INSTRUCTION="TRUE",
                      MASTERBUSINTERFACE=hpm, MEMTYPE="REGISTER", SLAVEBUSINTERFACE=interface)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n' + ET.tostring(
        root, encoding="unicode") + "\n"


def write_hwh(path: Path | str, p: Platform | None = None, impl: str = "hls") -> Path:
    """Write the virtual ZCU104's .hwh (atomically). PYNQ wants <name>.bit beside it."""
    path = Path(path)
    if path.suffix != ".hwh":
        raise PlatformError(f"{path}: a hand-off file must end in .hwh (PYNQ pairs it with .bit)")
    write_atomic(path, hwh_text(p, impl))
    return path


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deltamtl platform", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")
    parser.add_argument("--hwh", type=Path, help="write a virtual .hwh here instead")
    parser.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ)
    parser.add_argument("--impl", choices=IMPLS, default="hls")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        plat = zcu104(args.clock_mhz)
        if args.hwh:
            print(f"wrote: {write_hwh(args.hwh, plat, args.impl)}")
            return 0
        stale = 0
        for path, text in generated_files().items():
            rel = path.relative_to(ROOT)
            if args.check:
                ok = path.exists() and path.read_text() == text
                stale += not ok
                print(f"{'up to date' if ok else 'STALE'}: {rel}")
            else:
                print(f"{'wrote' if write_atomic(path, text) else 'up to date'}: {rel}")
        if stale:
            print("run: deltamtl platform")
        return 1 if stale else 0
    except PlatformError as exc:
        parser.exit(2, f"deltamtl.platform: {exc}\n")

