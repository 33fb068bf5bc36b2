"""Analytic resource estimate of the HLS core for one build's CoreLimits (no Vitis needed).

* Memories: the shapes come from the C++ itself (``core_arrays()`` in hls/core.cpp, through
  the emulation library: memories, rows, bits per row), the mapping from core.cpp's
  ``BIND_STORAGE`` pragmas; each memory costs ceil(bits / port width) x ceil(rows / port
  depth) blocks of its cheapest mode (URAM 4K x 72; BRAM36 512 x 72 simple dual-port down to
  32K x 1, 36 bits at most in true dual-port; a BRAM18 counts half). Unbound arrays are
  LUTRAM, completely partitioned ones registers.
* Logic: DSP48E2, LUT and FF counted from the datapath's structure (docs/hls.md,
  "Pragmas against the ZCU104 budget"). DSP is exact for the mapping assumed (one DSP48E2
  per MAC); LUT and FF are rough (+-50 %): csynth/implementation replace them.

    deltamtl hls-resources [--limits board|tiny|ci | --limits P I O NNZ LANES [W [T [B]]]]
                           [--beat-words B]

``--beat-words`` replaces the limits' beat_words (B, stream words per beat): the estimate
of a wider-stream build without a CoreLimits of its own (BOARD_LIMITS still has B = 1).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import math
import re
from dataclasses import dataclass

from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.platform import PART, PART_RESOURCES
from deltamtl.hls.build import HLS_DIR, LIMITS_HELP, parse_limits
from deltamtl.hls.emulator import _library

HEADROOM_TARGET = 0.15  # of each resource left for fetch, commit and the block design

URAM = (4096, 72)
# (rows, bits, BRAM36 units) per mode; 72-bit ports only in simple dual-port
BRAM_MODES_2P = [(512, 72, 1.0), (1024, 36, 1.0), (2048, 18, 1.0), (4096, 9, 1.0),
                 (8192, 4, 1.0), (16384, 2, 1.0), (32768, 1, 1.0),
                 (512, 36, 0.5), (1024, 18, 0.5), (2048, 9, 0.5), (4096, 4, 0.5),
                 (8192, 2, 0.5), (16384, 1, 0.5)]
BRAM_MODES_T2P = [m for m in BRAM_MODES_2P if m[1] <= (36 if m[2] == 1.0 else 18)]
LUTRAM_ROWS, LUTRAM_BITS, LUTRAM_LUTS = 64, 3, 4  # RAM64M: 64 x 3 bits, one write port


@dataclass
class Memory:
    name: str
    memories: int
    rows: int
    bits: int
    kind: str  # "uram", "bram", "lutram", "reg"
    t2p: bool
    uram: int = 0
    bram36: float = 0.0
    lut: int = 0
    ff: int = 0

    @property
    def mbit(self) -> float:
        return self.memories * self.rows * self.bits / 1e6


def core_arrays(limits: CoreLimits) -> list[tuple[str, int, int, int]]:
    """(name, memories, rows, bits) of every array of the core built for `limits`."""
    lib = _library(limits).lib
    cap = 32
    names = (ctypes.c_char_p * cap)()
    mem, rows, bits = ((ctypes.c_long * cap)() for _ in range(3))
    lib.dmtl_core_arrays.restype = ctypes.c_int
    n = lib.dmtl_core_arrays(names, mem, rows, bits, cap)
    if not 0 < n <= cap:
        raise RuntimeError(f"core_arrays() returned {n}: an array's declaration and shape differ")
    return [(names[k].decode(), mem[k], rows[k], bits[k]) for k in range(n)]


def bindings(core_source: str | None = None) -> tuple[dict[str, tuple[str, str]], set[str]]:
    """{array: (type, impl)} from BIND_STORAGE, and the completely partitioned arrays."""
    text = core_source if core_source is not None else (HLS_DIR / "core.cpp").read_text()
    bound = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(
        r"#pragma\s+HLS\s+BIND_STORAGE\s+variable\s*=\s*(\w+)\s+type\s*=\s*(\w+)\s+impl\s*=\s*(\w+)",
        text)}
    complete = {m.group(1) for m in re.finditer(
        r"#pragma\s+HLS\s+ARRAY_PARTITION\s+variable\s*=\s*(\w+)\s+type\s*=\s*complete(?!\s+dim\s*=\s*[1-9])",
        text)}
    return bound, complete


def bram36(rows: int, bits: int, t2p: bool = False) -> float:
    modes = BRAM_MODES_T2P if t2p else BRAM_MODES_2P
    return min(math.ceil(bits / w) * math.ceil(rows / d) * size for d, w, size in modes)


def uram(rows: int, bits: int) -> int:
    return math.ceil(bits / URAM[1]) * math.ceil(rows / URAM[0])


def map_memories(limits: CoreLimits, core_source: str | None = None) -> list[Memory]:
    bound, complete = bindings(core_source)
    out = []
    for name, memories, rows, bits in core_arrays(limits):
        kind, t2p = "lutram", False
        if name in bound:
            kind, t2p = bound[name][1].lower(), bound[name][0].lower() == "ram_t2p"
        elif name in complete:
            kind = "reg"
        m = Memory(name, memories, rows, bits, kind, t2p)
        if kind == "uram":
            m.uram = memories * uram(rows, bits)
        elif kind == "bram":
            m.bram36 = memories * bram36(rows, bits, t2p)
        elif kind == "lutram":
            m.lut = memories * math.ceil(rows / LUTRAM_ROWS) * math.ceil(bits / LUTRAM_BITS) * LUTRAM_LUTS
        else:
            m.ff = memories * rows * bits
        out.append(m)
    return out


def rotation_luts(n: int, bits: int) -> int:
    """An n-way barrel rotation of `bits`-bit words: ceil(log2 n) stages of 2:1 muxes, two
    per LUT6 (shared select)."""
    return math.ceil(math.log2(n)) * n * bits // 2 if n > 1 else 0


# One more beat word (B > 1) over the B = 1 datapath: a delta encoder of 8 inputs (subtract,
# two compares, select; ~40 LUT each) + its popcount and the union mask OR, a dW entry's
# pack and INDEX compares, and the pipeline registers of its words.
ENCODER_LUT, ENCODER_FF = 8 * 40 + 8 + 16, 64 + 72 + 64


def logic(limits: CoreLimits) -> list[tuple[str, int, int, int, str]]:
    """(item, DSP48E2, LUT, FF, note) of the datapath; LUT/FF rough."""
    lanes, rows, b = limits.lanes, limits.token_rows, limits.beat_words
    return [
        ("MAC array T x L", rows * lanes, 16 * lanes + 18 * rows, 0,
         "one DSP48E2 per PE: 9 x 8 bit product, 32-bit sum in P; the switch restarts it from "
         "zero (OPMODE, no C-port load). LUT: the lanes' 8:1 weight-byte and the rows' 8:1 delta selects"),
        # st_val takes the PE rows whole at a switch and shifts up at each store: a 2:1
        # load-or-shift mux per bit (two per LUT6, shared select); at T = 1 only a load.
        ("PE shadow rows st_val", 0, rows * lanes * 32 // 2 if rows > 1 else 0, rows * lanes * 32,
         "one T x L x 32-bit copy overlapping the T-cycle store with MAC cycles; "
         "st_val load-or-shift muxes"),
        # Store item j: read the token's L words, rotate them onto the lanes, per lane the
        # initial value (slot select 2:1, TASK bias adder, DENSE bias select: 64 LUT), its
        # adder with st_val row 0 (32), the result into slot ys of the word read (64-bit 2:1,
        # 32), rotate back onto the banks. st_val sits after the MAC's memory reads, as late
        # in the pipeline as the word read, so no delay line for it.
        ("act store: 2 rotations + init + add + merge", 0,
         2 * rotation_luts(lanes, 64) + lanes * 64 + lanes * 32 + lanes * 32, 2 * lanes * 64 + lanes * 64,
         "read-modify-write of the stored token's word: rotations onto the lanes and back (64-bit "
         "words), initial value (bias add / slot select), + st_val, slot merge; a register after "
         "each rotation and after the merge"),
        ("weight pass (TASK dW)", lanes, 2 * rotation_luts(lanes, 64) + 16 * lanes,
         4 * lanes * 64 + 2 * lanes * 64, "L MACs, 2 rotations, FWD_DEPTH = 4 forwarded rows"),
        ("outputs: 2 accumulator reads + requant", 16 * b, 2 * rotation_luts(lanes, 32) + 8 * b * 250,
         2 * lanes * 32 + 8 * b * 128,
         f"{8 * b} channels a Y beat x (32 x 16 bit product: 2 DSP, round, shift, clamp)"),
        ("load_x encoder + loaders + control", 0, 6000 + (b - 1) * ENCODER_LUT,
         8000 + (b - 1) * ENCODER_FF,
         "compare/compaction/8-way rotation, seen mask, counters, stream handshakes (fixed guess "
         f"at B = 1) + {b - 1} more encoders / dW INDEX compares for B = {b}"),
        ("stream beat width", 0, 2 * 64 * (b - 1), 4 * 64 * (b - 1),
         f"TDATA {64 * b} bits in and out: register slices (2 x 2 regs) and input muxes, "
         "beyond the 64 bits of B = 1; row-block loaders use write enables, no data mux"),
    ]


def estimate(limits: CoreLimits) -> tuple[list[Memory], list[tuple[str, int, int, int, str]], dict]:
    mems, items = map_memories(limits), logic(limits)
    total = {"LUT": sum(m.lut for m in mems) + sum(i[2] for i in items),
             "FF": sum(m.ff for m in mems) + sum(i[3] for i in items),
             "DSP48E2": sum(i[1] for i in items),
             "BRAM36": sum(m.bram36 for m in mems),
             "URAM": sum(m.uram for m in mems)}
    return mems, items, total


def bank_ports(limits: CoreLimits) -> list[str]:
    """How one beat uses the banks' ports (docs/hls.md, "Packet layout"): each bank still
    takes at most its ports' accesses per cycle at any B."""
    b = limits.beat_words
    return [
        f"B = {b}: {64 * b}-bit TDATA; every loop still moves one beat per cycle (II = 1)",
        f"w_bank, x_ref: a W / XREF / X beat writes {b} of {limits.lanes} lane banks (one "
        "write each), XREF_OUT reads the same group; X also reads x_ref src there",
        f"dbuf: an X beat writes {b} token rows = {min(b, 2) if limits.token_rows > 1 else 1} "
        "way(s) of each true dual-port memory it touches (2 ports)",
        f"acc: a Y / YREF / YREF_OUT beat reads or writes {8 * b} / {2 * b} / {2 * b} channels of "
        f"one token in distinct skewed banks (<= L = {limits.lanes})",
        f"dw_buf: a DW beat writes {b} entries = one row in each of its banks; "
        f"mult/shift: {8 * b} banks, a REQ beat writes {2 * b} of them, a Y beat reads all",
    ]


def report(limits: CoreLimits) -> str:
    mems, items, total = estimate(limits)
    lines = [f"HLS core at {limits} on {PART}", "",
             *(f"* {line}" for line in bank_ports(limits)), "",
             "| array | memories x rows x bits | Mbit | mapping | URAM | BRAM36 | LUT | FF |",
             "|---|---|---|---|---|---|---|---|"]
    for m in mems:
        kind = m.kind + (" t2p" if m.t2p else "")
        lines.append(f"| `{m.name}` | {m.memories} x {m.rows} x {m.bits} | {m.mbit:.2f} | {kind} | "
                     f"{m.uram or ''} | {m.bram36:g} | {m.lut or ''} | {m.ff or ''} |")
    lines += ["", "| logic | DSP48E2 | LUT | FF | how |", "|---|---|---|---|---|"]
    for name, dsp, lut, ff, note in items:
        lines.append(f"| {name} | {dsp} | {lut} | {ff} | {note} |")
    lines += ["", "| resource | core | part | used | left |", "|---|---|---|---|---|"]
    for key, have in PART_RESOURCES.items():
        used = total[key] / have
        flag = "" if 1 - used >= HEADROOM_TARGET else f"  (< {HEADROOM_TARGET:.0%} left)"
        lines.append(f"| {key} | {total[key]:g} | {have} | {used:.1%} | {1 - used:.1%}{flag} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deltamtl hls-resources", description=__doc__.split("\n")[0])
    parser.add_argument("--limits", nargs="+", default=["board"], help=LIMITS_HELP)
    parser.add_argument("--beat-words", type=int, metavar="B",
                        help="stream words per beat instead of the limits' beat_words")
    args = parser.parse_args(argv)
    limits = parse_limits(args.limits)
    if args.beat_words is not None:
        try:
            limits = dataclasses.replace(limits, beat_words=args.beat_words)
        except ValueError as e:
            raise SystemExit(f"--beat-words: {e}") from e
    print(report(limits))
    _mems, _items, total = estimate(limits)
    return 0 if all(total[k] <= v for k, v in PART_RESOURCES.items()) else 1
