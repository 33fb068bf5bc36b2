"""cocotb bench of the compute core (RTL twin or the Vitis HLS export: same port names).

Environment (set by deltamtl.rtl.sim / tests/rtl/test_rtl_cosim.py):
    DMTV_PATH     .dmtv vector file (records run in order on one core; empty = reset)
    DMTV_REPORT   folder for this bench's JSON reports, one per test (<test>.json)
    DMTV_SEED     seed for valid gaps / back-pressure / reset points
    DMTV_IMPL     "rtl" (internal state signal available for phase timing) or "hls"
    DMTV_WATCHDOG scale of the per-packet time-out (default 1; the HLS export may be slower)

Every test runs under three checks of the Harness:
    watchdog   each packet must be answered within a budget scaled from the cycle model's
               cycles for it (deltamtl.contract.cycle_model), so a deadlocked core fails
               the test instead of hanging the run
    protocol   both AXI4-Stream ports: while TVALID is high and TREADY low, TVALID, TDATA
               and TLAST hold (AxisHoldRule, one per port, sampled every clock)
    quiet      no output beat after the last packet's trailer (Harness.expect_quiet)

Tests:
    x_initial_probe    first, before any reset: internal registers' power-up values to the
                       report (all zero under --x-initial unique unless the run passes
                       +verilator+rand+reset+2, which randomises them)
    run_vectors        every record, no gaps, no back-pressure: bit-exact + cycle counts
    run_vectors_stress every record with random TVALID gaps and random TREADY back-pressure
    reset_mid_job      reset during input and during output, then clean jobs (fresh golden)
    long_jobs          long DENSE/TEMPORAL/TASK jobs at the build's maxima: bit-exact and
                       non-zeros per cycle in the compute phase
    dense_rate         (deltamtl rtl dense-rate) dense jobs at the build's maxima, W loaded
                       and resident: MACs per cycle over the act phase and the whole job
    tile_edges         token counts around the tile of T rows (T > P, partial last tile,
                       a tile without deltas): bit-exact and cycles against the model
    unordered_dw       dW non-zeros out of order and split in two entries
    refusal_keeps_state refused packets keep the resident state
    watchdog_fires     a sink that never takes a beat: the watchdog fails the packet
    quiet_check_fires  output still streaming: expect_quiet fails
"""

from __future__ import annotations

import json
import logging
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
from deltamtl.contract.cycle_model import packet_breakdown
from deltamtl.contract.encoding import (
    join_sections,
    pack_job,
    packet_sections,
    trailer_status,
    trailer_word,
    with_header_field,
)
from deltamtl.contract.formats import JobFlag, Mode, choose_requant
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import CsrDelta, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import (
    NZ_FIELDS,
    STREAM_DATA_BITS,
    TRAILER_FIELDS,
    CoreStatus,
    Section,
)
from deltamtl.contract.vectors import read_vectors

CLK_NS = 4  # 250 MHz in simulation time; cycles are what is measured
# RTL state encoding (deltamtl_core.sv state_t): compute phases are these states
_ST_COMPUTE = {6, 7, 8, 9, 10}  # PATCH, ACT, WPASS, UNPATCH, WAITPIPE
_NZ = {f.name: f for f in NZ_FIELDS}
_TRL = {f.name: f for f in TRAILER_FIELDS}

# Watchdog budget per packet: WATCHDOG_FACTOR x the cycle model's cycles + WATCHDOG_SLACK.
# The model is within 5 % of the RTL (docs/rtl.md), so 4x only trips on a real stall; under
# stress the source idles 30 % and the sink 40 % of the cycles (Harness._pauses), which at
# worst stretches a packet about 1 / (0.7 * 0.6) = 2.4x more, hence 16x there.
WATCHDOG_FACTOR = {False: 4, True: 16}
WATCHDOG_SLACK = 256  # cycles: reset recovery and the pipeline's fill, whatever the job
# Cycles without an output beat that count as "nothing more comes": well above the core's
# trailer latency (5 cycles in the cycle model) and any stall the sink's pauses introduce
QUIET_CYCLES = 64
# Registers read before the first reset by x_initial_probe (RTL only): wide ones, so a
# randomised power-up leaves some bit set with near certainty
_PROBED = ("h0", "j_nnz", "j_p", "j_i", "j_o", "j_tag", "sec_left", "sec_idx")


class AxisHoldRule:
    """AXI4-Stream hold rule for one port, fed one sample per clock edge: once TVALID is
    high, TVALID, TDATA and TLAST may not change until TREADY takes the beat.

    Pure Python so that tests/rtl/test_rtl_bench_checks.py can show it fires.
    """

    def __init__(self, port: str) -> None:
        self.port = port
        self.held: tuple[int, int] | None = None  # (TDATA, TLAST) offered and not taken
        self.violations: list[str] = []

    def reset(self) -> None:
        self.held = None

    def sample(self, cycle: int, valid: int, ready: int, data: int, last: int) -> str | None:
        """One clock edge. Returns (and records) a violation message, or None."""
        error = None
        if self.held is not None:
            if not valid:
                error = f"{self.port}: TVALID dropped at cycle {cycle} before TREADY took the beat"
            elif (data, last) != self.held:
                error = (f"{self.port}: TDATA/TLAST changed during a stall at cycle {cycle}: "
                         f"{self.held[0]:#018x}/{self.held[1]} -> {data:#018x}/{last}")
        if error:
            self.violations.append(error)
        self.held = (data, last) if valid and not ready else None
        return error


class Harness:
    def __init__(self, dut, seed: int, stress: bool, limits: CoreLimits) -> None:
        self.dut = dut
        self.rng = random.Random(seed)
        self.stress = stress
        self.limits = limits
        self.cycle = 0
        self.first_in: int | None = None
        self.trailer_at: int | None = None
        self.compute_cycles = 0
        self.out_beats = 0  # m_axis beats taken since the start
        self.out_valid_cycles = 0  # cycles with m_axis TVALID high
        self.rules = {"s_axis": AxisHoldRule("s_axis"), "m_axis": AxisHoldRule("m_axis")}
        # Beats of limits.beat_words words (docs/hls.md, "Packet layout"): cocotbext-axi
        # cuts a frame into beats of the bus width, so TDATA must be 64 * B bits wide.
        self.beat_words = limits.beat_words
        for port in ("s_axis", "m_axis"):
            width = len(getattr(dut, f"{port}_TDATA"))
            assert width == STREAM_DATA_BITS * self.beat_words, (
                f"{port}_TDATA is {width} bits, the vectors' beat_words={self.beat_words} "
                f"needs {STREAM_DATA_BITS * self.beat_words}")
        # the golden state the core should hold, for the watchdog's cycle-model budget
        self.shadow = GoldenCore(limits)
        self.watchdog_scale = float(os.environ.get("DMTV_WATCHDOG", "1"))
        self.has_state = os.environ.get("DMTV_IMPL", "rtl") == "rtl"
        cocotb.start_soon(Clock(dut.ap_clk, CLK_NS, unit="ns").start())
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.ap_clk,
                                      dut.ap_rst_n, reset_active_level=False)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.ap_clk,
                                  dut.ap_rst_n, reset_active_level=False)
        # cocotbext-axi logs every frame's bytes at INFO: megabytes per job of a trained model
        self.source.log.setLevel(logging.WARNING)
        self.sink.log.setLevel(logging.WARNING)
        if stress:
            self.source.set_pause_generator(self._pauses(0.3))
            self.sink.set_pause_generator(self._pauses(0.4))
        cocotb.start_soon(self._monitor())

    def _pauses(self, p: float):
        while True:
            yield self.rng.random() < p

    def _port(self, prefix: str) -> tuple[int, int, int, int]:
        d = self.dut
        return (int(getattr(d, f"{prefix}_TVALID").value), int(getattr(d, f"{prefix}_TREADY").value),
                int(getattr(d, f"{prefix}_TDATA").value), int(getattr(d, f"{prefix}_TLAST").value))

    async def _monitor(self) -> None:
        dut = self.dut
        while True:
            await RisingEdge(dut.ap_clk)
            self.cycle += 1
            if int(dut.ap_rst_n.value) == 0:
                for rule in self.rules.values():
                    rule.reset()
                continue
            s_valid, s_ready, s_data, s_last = self._port("s_axis")
            m_valid, m_ready, m_data, m_last = self._port("m_axis")
            self.rules["s_axis"].sample(self.cycle, s_valid, s_ready, s_data, s_last)
            self.rules["m_axis"].sample(self.cycle, m_valid, m_ready, m_data, m_last)
            self.out_valid_cycles += m_valid
            if m_valid and m_ready:
                self.out_beats += 1
            if self.first_in is None and s_valid and s_ready:
                self.first_in = self.cycle
            if m_valid and m_ready and m_last and self.trailer_at is None:
                self.trailer_at = self.cycle
            if self.has_state and int(dut.st.value) in _ST_COMPUTE:
                self.compute_cycles += 1

    def check_protocol(self) -> None:
        errors = [e for rule in self.rules.values() for e in rule.violations]
        assert not errors, f"AXI4-Stream protocol: {len(errors)} violations: {errors[:3]}"

    async def reset(self, cycles: int = 4) -> None:
        self.dut.ap_rst_n.value = 0
        await ClockCycles(self.dut.ap_clk, cycles)
        self.dut.ap_rst_n.value = 1
        await ClockCycles(self.dut.ap_clk, 2)
        self.sink.clear()
        self.shadow.reset()

    def budget(self, words: np.ndarray) -> tuple[int, int]:
        """(time-out in cycles, the cycle model's cycles) for a packet on the shadow state."""
        model = packet_breakdown(np.asarray(words, dtype=np.uint64), self.shadow.state,
                                 self.limits).total
        cycles = WATCHDOG_FACTOR[self.stress] * model + WATCHDOG_SLACK
        return int(cycles * self.watchdog_scale), model

    async def _exchange(self, words: np.ndarray) -> AxiStreamFrame:
        await self.source.send(_frame(words, self.beat_words))
        return await self.sink.recv()

    async def run_packet(self, words: np.ndarray) -> tuple[list[int], dict]:
        """Send one packet, wait for its output packet; returns words and timing.

        Fails when an output word is already waiting (extra output of the previous packet),
        when no output packet arrives within the watchdog's budget, or on a protocol error.
        """
        # a whole extra frame waits in the sink; a partial one would prefix this packet's
        # output and fail its comparison; after the last packet, expect_quiet looks
        assert self.sink.empty(), "an output packet arrived after the previous packet's trailer"
        self.first_in = None
        self.trailer_at = None
        self.compute_cycles = 0
        words = np.asarray(words, dtype=np.uint64)
        limit, model = self.budget(words)
        self.shadow.run_packet(words)
        try:
            frame = await with_timeout(self._exchange(words), limit * CLK_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(
                f"watchdog: no output packet within {limit} cycles (the cycle model expects "
                f"{model}): the core is deadlocked or far slower than modelled") from None
        self.check_protocol()
        timing = {"cycles": (self.trailer_at - self.first_in + 1)
                  if self.first_in is not None and self.trailer_at is not None else None,
                  "compute_cycles": self.compute_cycles if self.has_state else None}
        return _words(frame, self.beat_words), timing

    async def expect_quiet(self, cycles: int = QUIET_CYCLES) -> None:
        """No output beat, and no TVALID, for ``cycles`` cycles: nothing follows the last
        trailer. Call after the last packet of a test (run_packet checks between packets)."""
        beats, valid = self.out_beats, self.out_valid_cycles
        await ClockCycles(self.dut.ap_clk, cycles)
        extra = self.out_beats - beats
        assert extra == 0 and self.out_valid_cycles == valid and self.sink.empty(), (
            f"{extra} output words ({self.out_valid_cycles - valid} cycles of TVALID) after "
            "the last packet's trailer")
        self.check_protocol()


def _frame(words, beat_words: int = 1) -> AxiStreamFrame:
    # no TKEEP on the bus: cocotbext-axi treats TDATA as byte lanes, byte k = bits 8k+7:8k,
    # so word r of a beat is TDATA bits [64r+63 : 64r]; a packet is whole beats
    words = np.asarray(words, dtype="<u8")
    assert words.size % beat_words == 0, f"{words.size} words are not whole beats of {beat_words}"
    return AxiStreamFrame(words.tobytes())


def _words(frame: AxiStreamFrame, beat_words: int = 1) -> list[int]:
    data = bytes(frame.tdata)
    if len(data) % (8 * beat_words):
        raise AssertionError(f"output frame of {len(data)} bytes is not whole {64 * beat_words}-bit beats")
    return [int(w) for w in np.frombuffer(data, dtype="<u8")]


def _write_report(name: str, data: dict) -> None:
    folder = os.environ.get("DMTV_REPORT")
    if folder:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{name}.json"), "w") as fh:
            json.dump(data, fh)


def _first_diff(got: list[int], exp: list[int]) -> str:
    if len(got) != len(exp):
        return f"{len(got)} words, expected {len(exp)}; trailer got {got[-1]:#x} exp {exp[-1]:#x}"
    for k, (g, e) in enumerate(zip(got, exp, strict=True)):
        if g != e:
            return f"word {k}: got {g:#018x} expected {e:#018x}"
    return ""


async def _run_file(dut, stress: bool) -> None:
    path = os.environ["DMTV_PATH"]
    seed = int(os.environ.get("DMTV_SEED", "1"))
    limits, records = read_vectors(path)
    h = Harness(dut, seed, stress, limits)
    await h.reset()
    report = []
    failures = []
    every = max(1, len(records) // 20)
    start = time.monotonic()
    for k, rec in enumerate(records):
        if k and k % every == 0:
            dut._log.info("%s: record %d / %d, %d mismatching so far, %.1f s",
                          "stress" if stress else "plain", k, len(records), len(failures),
                          time.monotonic() - start)
        if rec.is_reset:
            await h.reset()
            report.append({"record": k, "cls": rec.cls, "ok": True})
            continue
        got, timing = await h.run_packet(rec.words_in)
        exp = [int(w) for w in rec.words_out]
        diff = _first_diff(got, exp)
        if diff:
            failures.append(f"record {k} ({rec.cls}): {diff}")
            dut._log.error("record %d (%s): %s", k, rec.cls, diff)
        report.append({"record": k, "cls": rec.cls, "ok": not diff, **timing})
        if diff and len(failures) <= 3:
            report[-1]["got"] = got  # the first few failing outputs, for diagnosis
    await h.expect_quiet()
    _write_report("run_vectors_stress" if stress else "run_vectors",
                  {"limits": limits.__dict__, "stress": stress, "records": report})
    assert not failures, f"{len(failures)} of {len(records)} records differ: {failures[:5]}"


@cocotb.test()
async def x_initial_probe(dut):
    """Defined first so that it runs before anything resets the core: the power-up values of
    a few wide internal registers, to the report. With --x-initial unique they are zeros
    unless the run passes +verilator+rand+reset+2 (tests/rtl/test_rtl_cosim.py runs both)."""
    values = {}
    if os.environ.get("DMTV_IMPL", "rtl") == "rtl":  # the HLS export has other names
        for name in _PROBED:
            values[name] = int(getattr(dut, name).value)
    _write_report("x_initial_probe", {"values": values})


@cocotb.test()
async def run_vectors(dut):
    """Every record of DMTV_PATH, no gaps: bit-exact outputs and cycles per job."""
    await _run_file(dut, stress=False)


@cocotb.test()
async def run_vectors_stress(dut):
    """Every record with random TVALID gaps and TREADY back-pressure: bit-exact."""
    await _run_file(dut, stress=True)


def _limits() -> CoreLimits:
    limits, _ = read_vectors(os.environ["DMTV_PATH"])
    return limits


def _bank_filling_dims(limits: CoreLimits) -> tuple[int, int]:
    """(O, I) within max_weights that fill the most weight-bank words per lane,
    ceil(O/L) * ceil(I/8) (ties: the larger O*I): the bank's worst case."""
    best = (0, 0, 0, 0)
    for o in range(1, limits.max_out + 1):
        i = min(limits.max_in, limits.max_weights // o)
        if i >= 1:
            best = max(best, (-(-o // limits.lanes) * -(-i // 8), o * i, o, i))
    return best[2], best[3]


def _job(rng: np.random.Generator, mode: Mode, flags: JobFlag, p: int, i: int, o: int,
         x_ref=None, y_ref=None, w=None, dw=None, th: int = 1, frac: float = 1.0) -> SiteJob:
    mult, shift = choose_requant(127.0 / (128 * 128 * np.sqrt(i)) * rng.uniform(0.5, 2, o))
    if x_ref is not None and frac < 1.0:
        change = (rng.random((p, i)) < frac) * rng.integers(-9, 10, (p, i))
        x = np.clip(x_ref.astype(np.int32) + change, -128, 127).astype(np.int8)
    else:
        x = rng.integers(-128, 128, (p, i)).astype(np.int8)
    bias = rng.integers(-(1 << 16), 1 << 16, o).astype(np.int32) if mode != Mode.TEMPORAL else None
    return SiteJob(mode, flags, th, x, mult, shift, o, w=w, dw=dw, bias=bias, x_ref=x_ref,
                   y_ref=y_ref)


@cocotb.test()
async def reset_mid_job(dut):
    """Reset while a packet streams in, and while a result streams out; then clean jobs."""
    seed = int(os.environ.get("DMTV_SEED", "1"))
    rng = np.random.default_rng(seed)
    limits = _limits()
    h = Harness(dut, seed, stress=True, limits=limits)
    await h.reset()
    b = limits.beat_words
    p, o = limits.max_tokens, limits.max_out
    i = min(limits.max_in, limits.max_weights // o)  # O*I within the weight bank
    for where in ("input", "output"):
        golden = GoldenCore(limits)
        w = rng.integers(-128, 128, (o, i)).astype(np.int8)
        words = pack_job(_job(rng, Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, p, i, o, w=w), b)
        send = cocotb.start_soon(h.source.send(_frame(words, b)))
        if where == "input":
            await ClockCycles(dut.ap_clk, int(rng.integers(3, max(4, len(words) // 2))))
        else:
            while not (dut.m_axis_TVALID.value == 1 and dut.m_axis_TREADY.value == 1):
                await RisingEdge(dut.ap_clk)
            await ClockCycles(dut.ap_clk, int(rng.integers(1, 6)))
        await send
        await h.reset()
        golden.reset()
        # after reset the core holds no state: a job on resident weights is refused ...
        job = _job(rng, Mode.DENSE, JobFlag.NONE, 2, i, o)
        got, _ = await h.run_packet(pack_job(job, b))
        exp = [int(x) for x in golden.run_packet(pack_job(job, b))]
        assert got == exp, f"after reset during {where}: {_first_diff(got, exp)}"
        # ... and clean jobs run bit-exact
        w2 = rng.integers(-128, 128, (o, i)).astype(np.int8)
        for k in range(2):
            if k == 0:
                job = _job(rng, Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, p, i, o, w=w2)
            else:
                job = _job(rng, Mode.TEMPORAL, JobFlag.EMIT_REF, p, i, o, th=2,
                           x_ref=golden.state.x_ref, frac=0.3)
            exp = [int(x) for x in golden.run_packet(pack_job(job, b))]
            got, _ = await h.run_packet(pack_job(job, b))
            assert got == exp, f"clean job after reset during {where}: {_first_diff(got, exp)}"
    await h.expect_quiet()


@cocotb.test()
async def long_jobs(dut):
    """Long jobs at the build's maxima (all tokens, the O x I that fills the most weight-bank
    words) without back-pressure: bit-exact, and the compute phase's broadcast non-zeros
    per cycle (per lane group) written to DMTV_REPORT."""
    seed = int(os.environ.get("DMTV_SEED", "1"))
    rng = np.random.default_rng(seed)
    limits = _limits()
    h = Harness(dut, seed, stress=False, limits=limits)
    await h.reset()
    golden = GoldenCore(limits)
    b = limits.beat_words
    p, lanes = limits.max_tokens, limits.lanes
    o, i = _bank_filling_dims(limits)
    w = rng.integers(-100, 100, (o, i)).astype(np.int8)
    dense_dw = np.where(rng.random((o, i)) < 0.2, rng.integers(-20, 21, (o, i)), 0)
    dense_dw[np.cumsum(np.ones(o, int)) % 5 == 0] = 0  # some rows without non-zeros
    dw = CsrDelta.from_dense(dense_dw.astype(np.int8))
    if dw.nnz > limits.max_nnz_dw:
        dw = None
    x_ref = None
    rows = []
    for name in ("dense", "temporal", "task"):
        if name == "dense":
            job = _job(rng, Mode.DENSE, JobFlag.LOAD_W, p, i, o, w=w)
        elif name == "temporal":
            job = _job(rng, Mode.TEMPORAL, JobFlag.NONE, p, i, o, x_ref=x_ref, th=2, frac=0.4)
        else:
            job = _job(rng, Mode.TASK, JobFlag.NONE, p, i, o, x_ref=x_ref, dw=dw, th=2, frac=0.4)
        exp = [int(x) for x in golden.run_packet(pack_job(job, b))]
        x_ref = golden.state.x_ref
        got, timing = await h.run_packet(pack_job(job, b))
        assert got == exp, f"long {name} job: {_first_diff(got, exp)}"
        nnz_act = _TRL["nnz_act"].get([trailer_word(exp, b)])
        groups_o = -(-o // lanes)
        groups_p = -(-p // lanes)
        broadcasts = nnz_act * groups_o + (job.nnz_dw * groups_p if name == "task" else 0)
        rows.append({"job": name, "tokens": p, "in": i, "out": o, "lanes": lanes,
                     "nnz_act": nnz_act, "nnz_dw": job.nnz_dw if name == "task" else 0,
                     "broadcasts": broadcasts, **timing,
                     "nnz_per_cycle": (broadcasts / timing["compute_cycles"])
                     if timing["compute_cycles"] else None})
        dut._log.info("long %s: %s", name, rows[-1])
    await h.expect_quiet()
    _write_report("long_jobs", {"limits": limits.__dict__, "long_jobs": rows})


@cocotb.test()
async def tile_edges(dut):
    """Token counts around the MAC array's tile of T token rows (T > P, P = T, partial last
    tile, all tokens), each as DENSE, TEMPORAL (a tile without deltas: empty union) and
    TASK with dW, several output groups: bit-exact; measured and modelled cycles to the
    report (tests/rtl/test_rtl_cosim.py compares them)."""
    seed = int(os.environ.get("DMTV_SEED", "1"))
    rng = np.random.default_rng(seed + 13)
    limits = _limits()
    h = Harness(dut, seed, stress=False, limits=limits)
    await h.reset()
    golden = GoldenCore(limits)
    t = limits.token_rows
    i = min(limits.max_in, 21)
    o = min(limits.max_out, 2 * limits.lanes + 3, limits.max_weights // i)
    dense_dw = np.where(rng.random((o, i)) < 0.2, rng.integers(-20, 21, (o, i)), 0)
    dw = CsrDelta.from_dense(dense_dw.astype(np.int8))
    if dw.nnz > limits.max_nnz_dw:
        dw = None
    counts = sorted({p for p in (1, t - 1, t, t + 1, 2 * t - 1, limits.max_tokens)
                     if 1 <= p <= limits.max_tokens})
    rows = []
    for p in counts:
        w = rng.integers(-100, 100, (o, i)).astype(np.int8)
        for name in ("dense", "temporal", "task"):
            if name == "dense":
                job = _job(rng, Mode.DENSE, JobFlag.LOAD_W, p, i, o, w=w)
            elif name == "temporal":
                job = _job(rng, Mode.TEMPORAL, JobFlag.EMIT_REF, p, i, o,
                           x_ref=golden.state.x_ref, th=2, frac=0.3)
                job.x[:min(p, t)] = golden.state.x_ref[:min(p, t)]  # tile 0: no deltas
            else:
                job = _job(rng, Mode.TASK, JobFlag.EMIT_REF, p, i, o, x_ref=golden.state.x_ref,
                           dw=dw, th=2, frac=0.3)
            words = pack_job(job, limits.beat_words)
            model = packet_breakdown(words, golden.state, limits).total
            exp = [int(x) for x in golden.run_packet(words)]
            got, timing = await h.run_packet(words)
            assert trailer_status(exp, limits.beat_words) == CoreStatus.OK, f"{name} P={p}: refused by the golden"
            assert got == exp, f"{name} P={p} (T={t}): {_first_diff(got, exp)}"
            rows.append({"job": name, "tokens": p, "token_rows": t, "model": model, **timing})
    await h.expect_quiet()
    _write_report("tile_edges", {"limits": limits.__dict__, "jobs": rows})


@cocotb.test()
async def dense_rate(dut):
    """`deltamtl rtl dense-rate`: one DENSE job with LOAD_W, then the same shape on the
    resident weights, both at the build's maxima (P = max_tokens, I = max_in, O = max_out),
    random int8 inputs: bit-exact, and P*I*O MACs over the act phase and over the whole job
    (first input beat to trailer) to the report."""
    seed = int(os.environ.get("DMTV_SEED", "1"))
    rng = np.random.default_rng(seed)
    limits = _limits()
    h = Harness(dut, seed, stress=False, limits=limits)
    await h.reset()
    golden = GoldenCore(limits)
    p, i, o = limits.max_tokens, limits.max_in, limits.max_out
    w = rng.integers(-100, 100, (o, i)).astype(np.int8)
    rows = []
    for name, flags in (("load_w", JobFlag.LOAD_W), ("resident_w", JobFlag.NONE)):
        job = _job(rng, Mode.DENSE, flags, p, i, o, w=w if flags else None)
        words = pack_job(job, limits.beat_words)
        model = packet_breakdown(words, golden.state, limits)
        exp = [int(x) for x in golden.run_packet(words)]
        got, timing = await h.run_packet(words)
        assert got == exp, f"dense {name}: {_first_diff(got, exp)}"
        macs = p * i * o
        rows.append({"job": name, "tokens": p, "in": i, "out": o, "lanes": limits.lanes,
                     "token_rows": limits.token_rows, "beat_words": limits.beat_words,
                     "input_words": int(words.size),
                     "input_beats": int(words.size) // limits.beat_words,
                     "nnz_act": int(np.count_nonzero(job.x)), "macs": macs, **timing,
                     "model_cycles": model.total, "model_act": model.act,
                     "macs_per_cycle_act": macs / timing["compute_cycles"],
                     "macs_per_cycle_job": macs / timing["cycles"]})
        dut._log.info("dense rate %s: %s", name, rows[-1])
    await h.expect_quiet()
    _write_report("dense_rate", {"limits": limits.__dict__, "jobs": rows})


@cocotb.test()
async def unordered_dw(dut):
    """dW non-zeros out of row order and with repeated (row, col) entries: the golden sums
    them (np.add.at); so must the weight pass (TASK) and the W patch (DENSE)."""
    seed = int(os.environ.get("DMTV_SEED", "1"))
    rng = np.random.default_rng(seed + 7)
    limits = _limits()
    h = Harness(dut, seed, stress=True, limits=limits)
    await h.reset()
    golden = GoldenCore(limits)
    b = limits.beat_words
    p, i, o = min(limits.max_tokens, 12), min(limits.max_in, 40), min(limits.max_out, 40)
    w = rng.integers(-60, 60, (o, i)).astype(np.int8)
    mask = rng.random((o, i)) < 0.15
    dense_dw = np.where(mask, rng.integers(-10, 11, (o, i)), 0).astype(np.int8)
    dw = CsrDelta.from_dense(dense_dw)
    nnz = min(dw.nnz, limits.max_nnz_dw // 2)
    dw = CsrDelta.from_dense(np.where(np.cumsum(mask).reshape(o, i) <= nnz, dense_dw, 0)
                             .astype(np.int8))
    for name in ("dense", "task"):
        if name == "dense":
            job = _job(rng, Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, p, i, o, w=w, dw=dw)
        else:
            job = _job(rng, Mode.TASK, JobFlag.EMIT_REF, p, i, o, x_ref=golden.state.x_ref,
                       dw=dw, th=1, frac=0.5)
        sections = packet_sections(pack_job(job, b), b)
        nz = sections[Section.DW]
        # split every entry v into (v - v//2, v//2) twice over, shuffled across rows
        parts = []
        for word in (int(w) for w in nz):
            value = int(np.uint8(_NZ["value"].get([word])).view(np.int8))
            for piece in (value - value // 2, value // 2):
                entry = [0]
                _NZ["row"].put(entry, _NZ["row"].get([word]))
                _NZ["col"].put(entry, _NZ["col"].get([word]))
                _NZ["value"].put(entry, int(np.int8(piece).view(np.uint8)))
                parts.append(entry[0])
        shuffled = np.array(parts, dtype=np.uint64)[rng.permutation(len(parts))]
        sections[Section.HEADER] = with_header_field(sections[Section.HEADER], "nnz_dw",
                                                     shuffled.size)
        sections[Section.DW] = shuffled
        packet = join_sections(sections, b)
        exp_words = [int(x) for x in golden.run_packet(packet)]
        assert trailer_status(exp_words, b) == CoreStatus.OK, "the golden refused the shuffled packet"
        got, _ = await h.run_packet(packet)
        assert got == exp_words, f"unordered dW ({name}): {_first_diff(got, exp_words)}"
    await h.expect_quiet()


@cocotb.test()
async def refusal_keeps_state(dut):
    """Packets refused after they carried W and refs (LENGTH early and late, INDEX,
    NO_STATE) leave the resident weight bank and reuse buffer as they were."""
    seed = int(os.environ.get("DMTV_SEED", "1"))
    rng = np.random.default_rng(seed + 11)
    limits = _limits()
    h = Harness(dut, seed, stress=True, limits=limits)
    await h.reset()
    golden = GoldenCore(limits)
    b = limits.beat_words
    p, i, o = min(limits.max_tokens, 10), min(limits.max_in, 30), min(limits.max_out, 20)

    async def check(words, what):
        exp = [int(x) for x in golden.run_packet(np.asarray(words, dtype=np.uint64))]
        got, _ = await h.run_packet(words)
        assert got == exp, f"{what}: {_first_diff(got, exp)}"
        return exp

    w = rng.integers(-128, 128, (o, i)).astype(np.int8)
    await check(pack_job(_job(rng, Mode.DENSE, JobFlag.LOAD_W, p, i, o, w=w), b), "keyframe")
    for _ in range(2):
        w_new = rng.integers(-128, 128, (o, i)).astype(np.int8)
        x_ref = rng.integers(-128, 128, (p, i)).astype(np.int8)
        y_ref = rng.integers(-(1 << 20), 1 << 20, (p, o)).astype(np.int32)
        job = _job(rng, Mode.TEMPORAL, JobFlag.LOAD_W | JobFlag.LOAD_REF | JobFlag.EMIT_REF,
                   p, i, o, w=w_new, x_ref=x_ref, y_ref=y_ref)
        words = pack_job(job, b)
        exp = await check(words[:-b], "LENGTH (early TLAST)")  # one beat short
        assert trailer_status(exp, b) == CoreStatus.LENGTH
        exp = await check(np.concatenate([words, words[:3 * b]]), "LENGTH (late TLAST)")
        assert trailer_status(exp, b) == CoreStatus.LENGTH
        dense_dw = np.zeros((o, i), np.int8)
        dense_dw[o - 1, i - 1] = 5
        sections = packet_sections(pack_job(_job(rng, Mode.DENSE, JobFlag.LOAD_W, p, i, o,
                                                 w=w_new, dw=CsrDelta.from_dense(dense_dw)), b), b)
        entry = [int(sections[Section.DW][0])]  # the one dW word
        _NZ["row"].put(entry, (1 << _NZ["row"].width) - 1)  # all ones: a row beyond out_dim
        sections[Section.DW][0] = np.uint64(entry[0])
        exp = await check(join_sections(sections, b), "INDEX")
        assert trailer_status(exp, b) == CoreStatus.INDEX
        other = _job(rng, Mode.TASK, JobFlag.LOAD_W, p + 1, i, o, w=w_new)
        exp = await check(pack_job(other, b), "NO_STATE (refs of other dims)")
        assert trailer_status(exp, b) == CoreStatus.NO_STATE
        # the resident state is still the keyframe's: TEMPORAL and TASK on it agree
        await check(pack_job(_job(rng, Mode.TEMPORAL, JobFlag.EMIT_REF, p, i, o, th=1,
                                  x_ref=golden.state.x_ref, frac=0.3), b), "resident TEMPORAL")
        await check(pack_job(_job(rng, Mode.TASK, JobFlag.EMIT_REF, p, i, o, th=2,
                                  x_ref=golden.state.x_ref, frac=0.3), b), "resident TASK")
    await h.expect_quiet()


def _small_job(rng: np.random.Generator, limits: CoreLimits) -> np.ndarray:
    p, i, o = min(limits.max_tokens, 4), min(limits.max_in, 16), min(limits.max_out, 16)
    w = rng.integers(-128, 128, (o, i)).astype(np.int8)
    return pack_job(_job(rng, Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, p, i, o, w=w),
                    limits.beat_words)


@cocotb.test()
async def watchdog_fires(dut):
    """A sink that never takes a beat stands for a deadlocked core: run_packet must fail
    with the watchdog's message within its budget, not hang. After a reset the core works."""
    seed = int(os.environ.get("DMTV_SEED", "1"))
    rng = np.random.default_rng(seed + 13)
    limits = _limits()
    h = Harness(dut, seed, stress=False, limits=limits)
    await h.reset()
    h.sink.pause = True
    words = _small_job(rng, limits)
    start = h.cycle
    try:
        await h.run_packet(words)
    except AssertionError as exc:
        assert "watchdog" in str(exc), exc
    else:
        raise AssertionError("the watchdog let a packet through a sink that takes nothing")
    limit, _model = h.budget(words)
    assert h.cycle - start <= limit + 2, (h.cycle - start, limit)
    h.sink.pause = False
    await h.reset()
    golden = GoldenCore(limits)
    words = _small_job(rng, limits)
    got, _ = await h.run_packet(words)
    exp = [int(x) for x in golden.run_packet(words)]
    assert got == exp, f"after the watchdog case: {_first_diff(got, exp)}"
    await h.expect_quiet()


@cocotb.test()
async def quiet_check_fires(dut):
    """expect_quiet must see output words: called while a result still streams out (the
    sink paused so the words wait on the port), it fails."""
    seed = int(os.environ.get("DMTV_SEED", "1"))
    rng = np.random.default_rng(seed + 17)
    limits = _limits()
    h = Harness(dut, seed, stress=False, limits=limits)
    await h.reset()
    h.sink.pause = True
    await h.source.send(_frame(_small_job(rng, limits), limits.beat_words))
    while int(dut.m_axis_TVALID.value) == 0:
        await RisingEdge(dut.ap_clk)
    try:
        await h.expect_quiet(8)
    except AssertionError as exc:
        assert "after the last packet" in str(exc), exc
    else:
        raise AssertionError("expect_quiet missed output words on the port")
    h.sink.pause = False
    await h.sink.recv()
    await h.reset()


@cocotb.test()
async def serve_packets(dut):
    """A live core for the host's ``rtl`` backend (host/rtl_backend.py): requests arrive on
    the named pipe DMTV_SERVE_IN, answers leave on DMTV_SERVE_OUT, one at a time, so the
    core's resident state carries over between jobs as on the board. Request: u32 kind
    (0 packet, 1 reset, 2 end), u32 n, n x u64 words; answer: u32 n, n x u64 words."""
    import struct

    h = Harness(dut, int(os.environ.get("DMTV_SEED", "1")), stress=False, limits=_limits())
    await h.reset()
    with open(os.environ["DMTV_SERVE_IN"], "rb") as req, open(os.environ["DMTV_SERVE_OUT"], "wb") as ans:
        while True:
            head = req.read(8)
            if len(head) < 8:
                return  # the host went away
            kind, n = struct.unpack("<II", head)
            words = np.frombuffer(req.read(8 * n), dtype="<u8") if n else np.zeros(0, "<u8")
            if kind == 2:
                return
            out: list[int] = []
            if kind == 1:
                await h.reset()
            else:
                out, _timing = await h.run_packet(words)
            ans.write(struct.pack("<I", len(out)) + np.asarray(out, dtype="<u8").tobytes())
            ans.flush()
