"""Reads Vitis HLS csynth reports and holds the kernels to II=1 and 300 MHz.

After ``csynth_design`` a solution has ``syn/report/*_csynth.xml``: one for the top
function and one per sub-module (Vitis HLS 2022+ outlines every pipelined loop into a
module of its own). This module collects from all of them the estimated clock period and,
for every loop, the achieved initiation interval (``PipelineII``) and latency, and checks
the main loops of a kernel (MAIN_LOOPS, docs/hls.md "II and dependences"):

* every main loop is found and pipelined at II = 1;
* the estimated clock period is at most TARGET_NS (3.33 ns, 300 MHz).

    deltamtl hls-report build/hls_prj/core/sol/syn/report --kernel core

prints a table and exits 1 when a check fails (``make hls`` runs it after csynth).
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

TARGET_NS = 3.33  # 300 MHz, run_hls.tcl's create_clock

# The loops each kernel spends its cycles in, by label (core.cpp, fetch.cpp, commit.cpp,
# dmtl_desc.h). Each must reach II = 1.
MAIN_LOOPS: dict[str, tuple[str, ...]] = {
    "core": ("load_w_rows", "load_dw", "load_bias", "load_req", "load_xref", "load_yref",
             "load_x", "patch_loop", "act_pass", "wgt_pass", "out_y", "out_xref",
             "out_yref"),
    "fetch": ("read_desc", "csr_indptr", "csr_indices", "read_words_loop", "realign_loop",
              "read_indptr", "read_nnz_loop", "emit_nnz_loop", "read_mult", "read_shift",
              "req_words"),
    "commit": ("read_desc", "csr_indptr", "csr_indices", "pack_loop", "write_words_loop"),
}


@dataclass
class LoopInfo:
    name: str
    module: str
    ii: int | None  # achieved II; None: not pipelined
    latency: str
    trip_count: str


@dataclass
class Report:
    kernel: str
    clock_ns: float | None
    loops: list[LoopInfo] = field(default_factory=list)

    def find(self, label: str) -> list[LoopInfo]:
        """Loops whose report name is the label or ends with it (Vitis prefixes nested
        and outlined loops with their parents' names)."""
        return [lp for lp in self.loops if lp.name == label or lp.name.endswith("_" + label)]


def _text(el: ET.Element | None) -> str:
    return "" if el is None or el.text is None else el.text.strip()


def _int(s: str) -> int | None:
    try:
        return int(float(s))
    except ValueError:
        return None


def _loops(el: ET.Element, module: str, parent: str = "") -> list[LoopInfo]:
    """Every loop element under SummaryOfLoopLatency (nested loops are child elements)."""
    out = []
    for child in el:
        if all(child.find(tag) is None for tag in ("PipelineII", "TripCount", "Latency")):
            continue  # a value (Latency's range, units, ...), not a loop
        name = f"{parent}_{child.tag}" if parent else child.tag
        ii = _int(_text(child.find("PipelineII")))
        latency = _text(child.find("Latency")) or _text(child.find("Latency/range/max"))
        out.append(LoopInfo(name, module, ii, latency or "?", _text(child.find("TripCount")) or "?"))
        out += _loops(child, module, name)
    return out


def read_report(report_dir: Path, kernel: str) -> Report:
    """All *_csynth.xml of one solution's syn/report folder."""
    files = sorted(Path(report_dir).glob("*_csynth.xml"))
    if not files:
        raise FileNotFoundError(f"{report_dir}: no *_csynth.xml (run csynth first: make hls)")
    rep = Report(kernel, None)
    for path in files:
        root = ET.parse(path).getroot()
        module = _text(root.find("UserAssignments/TopModelName")) or path.stem.replace("_csynth", "")
        clock = _text(root.find("PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod"))
        if clock and path.stem == f"{kernel}_csynth":
            rep.clock_ns = float(clock)
        elif clock and rep.clock_ns is None:
            rep.clock_ns = float(clock)
        elif clock:
            rep.clock_ns = max(rep.clock_ns, float(clock))  # type: ignore[arg-type]
        summary = root.find("PerformanceEstimates/SummaryOfLoopLatency")
        if summary is not None:
            rep.loops += _loops(summary, module)
    return rep


def check(rep: Report, main_loops: tuple[str, ...] | None = None,
          target_ns: float = TARGET_NS) -> list[str]:
    """Failures: a main loop missing or above II = 1, the clock above the target."""
    main_loops = MAIN_LOOPS.get(rep.kernel, ()) if main_loops is None else main_loops
    errors = []
    for label in main_loops:
        found = rep.find(label)
        if not found:
            errors.append(f"{rep.kernel}: loop {label} not in the csynth report")
        for lp in found:
            if lp.ii != 1:
                errors.append(f"{rep.kernel}: loop {lp.name} ({lp.module}) II = "
                              f"{'not pipelined' if lp.ii is None else lp.ii}, wanted 1")
    if rep.clock_ns is None:
        errors.append(f"{rep.kernel}: no estimated clock period in the report")
    elif rep.clock_ns > target_ns:
        errors.append(f"{rep.kernel}: estimated clock {rep.clock_ns:.3f} ns > {target_ns} ns "
                      f"({1000 / rep.clock_ns:.0f} MHz < {1000 / target_ns:.0f} MHz)")
    return errors


def table(rep: Report) -> str:
    rows = [f"{rep.kernel}: estimated clock "
            + (f"{rep.clock_ns:.3f} ns ({1000 / rep.clock_ns:.0f} MHz)" if rep.clock_ns else "?"),
            f"  {'loop':<40s} {'module':<28s} {'II':>4s} {'latency':>10s} {'trips':>8s}"]
    for lp in rep.loops:
        ii = "-" if lp.ii is None else str(lp.ii)
        rows.append(f"  {lp.name:<40s} {lp.module:<28s} {ii:>4s} {lp.latency:>10s} {lp.trip_count:>8s}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deltamtl hls-report", description="II / clock check of a csynth report")
    parser.add_argument("report_dir", type=Path, help="<project>/sol/syn/report")
    parser.add_argument("--kernel", required=True, choices=sorted(MAIN_LOOPS))
    parser.add_argument("--target-ns", type=float, default=TARGET_NS)
    args = parser.parse_args(argv)
    rep = read_report(args.report_dir, args.kernel)
    print(table(rep))
    errors = check(rep, target_ns=args.target_ns)
    for e in errors:
        print(f"FAIL {e}", file=sys.stderr)
    print(f"{args.kernel}: {'OK' if not errors else f'{len(errors)} failure(s)'}")
    return 1 if errors else 0

