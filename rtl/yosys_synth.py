"""yosys UltraScale+ resource estimates of the RTL core: `make rtl-synth`.

    deltamtl rtl-synth --lanes 32 64 128 --limits board   # writes build/synth/
    deltamtl rtl-synth --lanes 8 --limits ci

Runs rtl/synth/synth_core.ys (synth_xilinx -family xcup) once per lane count, parses the
cell statistics into LUT, FF, DSP48E2, BRAM36 (RAMB18 counted as half) and URAM counts,
compares them with the ZCU104 (XCZU7EV) budget and writes synth_report.{json,md}.
The estimate is yosys's mapping, not Vivado's: treat it as an order-of-magnitude check.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from deltamtl.contract.limits import BOARD_LIMITS, BOARD_WIDE_LIMITS, CI_LIMITS, CoreLimits
from deltamtl.contract.platform import PART_RESOURCES
from deltamtl.rtl.sim import ROOT, RTL_SOURCES, core_parameters, limits_tag

SCRIPT = ROOT / "rtl" / "synth" / "synth_core.ys"
OUT_DIR = ROOT / "build" / "synth"

# XCZU7EV (ZCU104) resources.
ZCU104_BUDGET = PART_RESOURCES  # the part's resources, defined once in contract/platform.py

# The core builds synthesised here (contract/limits.py defines every build's maxima)
LIMITS = {"board": BOARD_LIMITS, "board-wide": BOARD_WIDE_LIMITS, "ci": CI_LIMITS}

# LUTs taken by each distributed-RAM primitive
_LUTRAM_LUTS = {"RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
                "RAM32M": 4, "RAM32M16": 8, "RAM64M": 4, "RAM64M8": 8, "RAM32X1S": 1,
                "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4, "RAM512X1S": 8}


class SynthError(RuntimeError):
    pass


def parse_stat(text: str) -> dict[str, int]:
    """yosys `stat` output -> cell counts by type (the flattened top's section)."""
    cells: dict[str, int] = {}
    for m in re.finditer(r"^\s+(\S+)\s+(\d+)\s*$", text, re.M):
        name, count = m.group(1), int(m.group(2))
        if name.isupper() or name[:1].isupper():
            cells[name] = cells.get(name, 0) + count
    return cells


def summarise(cells: dict[str, int]) -> dict[str, float]:
    # INV cells become LUT1s (or fold into a LUT) in Vivado; shift registers are LUTs too
    lut_logic = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]|INV", c))
    srl = sum(n for c, n in cells.items() if c.startswith("SRL"))
    lutram = sum(n * _LUTRAM_LUTS[c] for c, n in cells.items() if c in _LUTRAM_LUTS)
    ff = sum(n for c, n in cells.items() if re.fullmatch(r"FD[RSCP]E", c))
    return {
        "LUT": lut_logic + lutram + srl,
        "LUT_logic": lut_logic,
        "LUT_as_RAM": lutram,
        "LUT_as_SRL": srl,
        "FF": ff,
        "DSP48E2": cells.get("DSP48E2", 0),
        "BRAM36": cells.get("RAMB36E2", 0) + 0.5 * cells.get("RAMB18E2", 0),
        "URAM": cells.get("URAM288", 0),
        "CARRY": cells.get("CARRY8", 0) + cells.get("CARRY4", 0),
    }


def synth(limits: CoreLimits, uram: bool = True, out_dir: Path = OUT_DIR,
          timeout_s: int = 7200) -> dict:
    """Synthesise one configuration; returns its summary (and writes the yosys log)."""
    if shutil.which("yosys") is None:
        raise SynthError("yosys not on PATH (Debian: apt-get install yosys)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = limits_tag(limits)
    stat = out_dir / f"stat_{tag}.txt"
    script = out_dir / f"synth_{tag}.ys"
    params = " ".join(f"-set {k} {v}" for k, v in core_parameters(limits).items())
    script.write_text(SCRIPT.read_text().format(
        sources=" ".join(str(s) for s in RTL_SOURCES), params=params,
        options="-uram" if uram else "", stat=stat))
    log = out_dir / f"yosys_{tag}.log"
    start = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(["nice", "yosys", "-q", "-l", str(log.with_suffix(".full.log")),
                               "-s", str(script)], stdout=fh, stderr=subprocess.STDOUT,
                              timeout=timeout_s, check=False)
    seconds = time.monotonic() - start
    if proc.returncode != 0 or not stat.exists():
        raise SynthError(f"yosys failed ({proc.returncode}) on {script}: see {log}")
    cells = parse_stat(stat.read_text())
    summary = summarise(cells)
    return {"limits": limits.__dict__, "uram": uram, "seconds": round(seconds, 1),
            "summary": summary, "cells": cells,
            "utilisation": {k: summary[k] / v for k, v in ZCU104_BUDGET.items()}}


def memory_bits(limits: CoreLimits) -> dict[str, int]:
    """Bits each on-chip buffer of rtl/deltamtl_core.sv holds (both halves where doubled,
    padding included), from the same size formulas as the RTL's localparams."""
    lanes, wi, t = limits.lanes, -(-limits.max_in // 8), limits.token_rows
    go, tg = -(-limits.max_out // lanes), -(-limits.max_tokens // lanes)
    nt = -(-limits.max_tokens // t)  # tiles of T tokens
    ci = max(1, (limits.max_in - 1).bit_length())
    co = max(1, (limits.max_out - 1).bit_length())
    wh = min(go * wi, (limits.max_weights + 7 * limits.max_out + (lanes - 1) * limits.max_in
                       + 7 * (lanes - 1) + 8 * lanes - 1) // (8 * lanes))
    # dW entry: row, col, value, first/last-of-row bits, byte padded; max(2, B) a word
    lep, dwp = -(-ci // 8) * 8, -(-(co + ci + 10) // 8) * 8
    dm = max(2, limits.beat_words)
    rows = -(-nt * limits.max_in // 8)  # union list rows of 8 entries
    return {
        "W bank (2 halves)": lanes * 2 * wh * 64,
        "y_ref/acc (2 halves)": lanes * limits.max_tokens * go * 64,
        "x_ref/x_new (2 halves)": lanes * 2 * tg * wi * 64,
        "delta buffer": t * nt * wi * 72,
        "union list": 2 * -(-rows // 2) * 8 * lep,
        "dW list": -(-limits.max_nnz_dw // dm) * dm * dwp,
        "bias + requant": lanes * go * 32 + limits.max_out * 22,
    }


def markdown(rows: list[dict]) -> str:
    head = ("| lanes x T | tokens/in/out/nnz/weights | LUT | FF | DSP48E2 | BRAM36 | URAM | yosys s |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        s, u, lim = r["summary"], r["utilisation"], r["limits"]
        lines.append(
            f"| {lim['lanes']} x {lim.get('token_rows', 1)} | {lim['max_tokens']}/{lim['max_in']}/{lim['max_out']}/"
            f"{lim['max_nnz_dw']}/{lim['max_weights']} | {s['LUT']:,} ({u['LUT']:.0%}) | {s['FF']:,} ({u['FF']:.0%}) "
            f"| {s['DSP48E2']} ({u['DSP48E2']:.0%}) | {s['BRAM36']:g} ({u['BRAM36']:.0%}) "
            f"| {s['URAM']} ({u['URAM']:.0%}) | {r['seconds']} |")
    budget = ", ".join(f"{k} {v:,}" for k, v in ZCU104_BUDGET.items())
    left = ["", "Headroom (budget left, worst row): " + ", ".join(
        f"{k} {1 - max(r['utilisation'][k] for r in rows):.0%}" for k in ZCU104_BUDGET)]
    mem = ["", "On-chip buffers (Mbit, from the parameters; ZCU104: 11.0 BRAM + 27.0 URAM):", "",
           "| lanes x T | " + " | ".join(memory_bits(BOARD_LIMITS)) + " | total |",
           "|---" * (len(memory_bits(BOARD_LIMITS)) + 2) + "|"]
    for r in rows:
        lim = CoreLimits(**r["limits"])
        bits = memory_bits(lim)
        mem.append(f"| {lim.lanes} x {lim.token_rows} | " + " | ".join(f"{b / 1e6:.2f}" for b in bits.values())
                   + f" | {sum(bits.values()) / 1e6:.2f} |")
    return (f"ZCU104 (XCZU7EV) budget: {budget}\n\n" + head + "\n".join(lines) + "\n"
            + "\n".join(left) + "\n" + "\n".join(mem) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="yosys UltraScale+ estimates of the RTL core")
    parser.add_argument("--lanes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--token-rows", type=int, default=None,
                        help="T of the MAC array (default: the limits' token_rows)")
    parser.add_argument("--limits", choices=sorted(LIMITS), default="board")
    parser.add_argument("--no-uram", action="store_true", help="map memories to BRAM/LUTRAM only")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--report-only", action="store_true",
                        help="re-summarise the existing JSON (cell counts) without yosys")
    args = parser.parse_args(argv)
    if args.report_only:
        path = args.out / f"synth_report_{args.limits}.json"
        rows = json.loads(path.read_text())
        for r in rows:
            r["summary"] = summarise(r["cells"])
            r["utilisation"] = {k: r["summary"][k] / v for k, v in ZCU104_BUDGET.items()}
        path.write_text(json.dumps(rows, indent=1))
        (args.out / f"synth_report_{args.limits}.md").write_text(markdown(rows))
        print(markdown(rows))
        return 0
    base = LIMITS[args.limits]
    rows = []
    for lanes in args.lanes:
        limits = replace(base, lanes=lanes, token_rows=args.token_rows or base.token_rows)
        print(f"yosys synth_xilinx -family xcup: {limits_tag(limits)} ...", flush=True)
        row = synth(limits, uram=not args.no_uram, out_dir=args.out)
        print(f"  {row['summary']} in {row['seconds']} s", flush=True)
        rows.append(row)
        # written after every configuration so a long run leaves partial results
        (args.out / f"synth_report_{args.limits}.json").write_text(json.dumps(rows, indent=1))
        (args.out / f"synth_report_{args.limits}.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0

