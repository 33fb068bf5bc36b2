"""g++ builds of the HLS kernels for C simulation: the emulation library and the testbenches.

Vitis HLS is not needed: the kernels compile with g++ against the open ap_types headers
that hls4ml ships (``<hls4ml>/templates/vivado/ap_types``). Every build goes to
``build/hls/<target>-<hash>/``, keyed by the sources, the compile flags, the compiler and the
core limits, so a rebuild happens only when one of them changes. The limits are
compile-time constants (``params.h``): ``limits=None`` uses the checked-in
``hls/generated/params.h``; a ``CoreLimits`` generates its own ``params.h`` into the build
folder (first on the include path), so one library exists per set of limits.

    deltamtl hls build emu|tb_core|tb_system [--limits P I O NNZ LANES [W [T [B]]]]
    deltamtl hls csim [--sequences N --seed S | --vectors FILE]
                                      [--limits ... | --params build/board/params.h]

``--params`` takes a params.h written elsewhere (e.g. ``deltamtl codegen`` output
redirected into build/ for a board-sized build); hls/generated/ is never rewritten here.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deltamtl.contract.atomic import atomic_path
from deltamtl.contract.limits import LIMIT_FIELDS, CoreLimits

HLS_DIR = Path(__file__).resolve().parent
ROOT = HLS_DIR.parent
BUILD_ROOT = ROOT / "build" / "hls"
CXX = os.environ.get("CXX", "g++")
# -O2: the activation-sparse pass dominates C-simulation time; -O1 halves compile time
# but doubles run time on the 500-job CI set.
BASE_FLAGS = ("-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unknown-pragmas",
              "-Wno-unused-label", "-Wno-unused-parameter")

TARGETS = {
    # name: (sources under hls/, extra flags, output file name)
    "emu": (("tb/emu_api.cpp",), ("-shared", "-fPIC"), "libdmtl_emu.so"),
    "tb_core": (("tb/tb_core.cpp", "core.cpp"), (), "tb_core"),
    "tb_system": (("tb/tb_system.cpp", "fetch.cpp", "core.cpp", "commit.cpp"), (), "tb_system"),
}


class BuildError(RuntimeError):
    """g++ failed or is missing; the message carries the command and its output."""


def ap_types_dir() -> Path:
    """hls4ml's bundled Xilinx ap_types headers (found without importing hls4ml)."""
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or spec.origin is None:
        raise BuildError("hls4ml is not installed: `make setup` installs hls4ml==1.3.0 "
                         "(its ap_types headers are needed for C simulation)")
    path = Path(spec.origin).parent / "templates" / "vivado" / "ap_types"
    if not (path / "ap_int.h").is_file():
        raise BuildError(f"{path}: no ap_int.h; hls4ml 1.3.0 ships it there")
    return path


def _sources() -> list[Path]:
    files = sorted(HLS_DIR.glob("*.cpp")) + sorted((HLS_DIR / "include").rglob("*.h"))
    files += sorted((HLS_DIR / "tb").glob("*.cpp")) + sorted((HLS_DIR / "tb").glob("*.h"))
    files += [HLS_DIR / "generated" / "contract.h", HLS_DIR / "generated" / "vector_files.h"]
    return files


def _compiler_id() -> str:
    exe = shutil.which(CXX)
    if exe is None:
        raise BuildError(f"C++ compiler {CXX!r} not found on PATH (apt-get install g++)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else exe


def params_text(limits: CoreLimits | None) -> str:
    if limits is None:
        return (HLS_DIR / "generated" / "params.h").read_text()
    from deltamtl.contract.codegen import params_header

    return params_header(limits)


def limits_from_params_header(path: Path | None = None) -> CoreLimits:
    """The CoreLimits a generated params.h encodes (default: hls/generated/params.h)."""
    path = path or HLS_DIR / "generated" / "params.h"
    found = dict(re.findall(r"constexpr int (\w+) = (\d+);", path.read_text()))
    missing = [f.upper() for f in LIMIT_FIELDS if f.upper() not in found]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} (regenerate: deltamtl codegen)")
    return CoreLimits(**{f: int(found[f.upper()]) for f in LIMIT_FIELDS})


def named_limits() -> dict[str, CoreLimits]:
    """The builds contract/limits.py defines, by the name the command line takes."""
    from deltamtl.contract.limits import BOARD_LIMITS, BOARD_WIDE_LIMITS, CI_LIMITS, TINY_LIMITS

    return {"board": BOARD_LIMITS, "board-wide": BOARD_WIDE_LIMITS, "tiny": TINY_LIMITS,
            "ci": CI_LIMITS}


LIMITS_HELP = ("board | tiny | ci, or P I O NNZ LANES [MAX_WEIGHTS [TOKEN_ROWS [BEAT_WORDS]]] "
               "(LIMIT_FIELDS order)")


def parse_limits(values: list[str]) -> CoreLimits:
    """`board` | `tiny` | `ci`, or the first 5 to 8 CoreLimits fields in LIMIT_FIELDS order
    (P I O NNZ LANES [MAX_WEIGHTS [TOKEN_ROWS [BEAT_WORDS]]])."""
    if len(values) == 1 and values[0] in named_limits():
        return named_limits()[values[0]]
    if not 5 <= len(values) <= len(LIMIT_FIELDS) or not all(v.isdigit() for v in values):
        raise SystemExit(f"--limits takes {LIMITS_HELP}")
    return CoreLimits(*(int(v) for v in values))


def _cli_limits(args: argparse.Namespace) -> CoreLimits | None:
    if args.params is not None:
        return limits_from_params_header(args.params)
    return None if args.limits is None else parse_limits(args.limits)


def build(target: str, limits: CoreLimits | None = None,
          extra_flags: tuple[str, ...] = ()) -> Path:
    """Build `target` (see TARGETS) for `limits`; returns the path of the built file."""
    if target not in TARGETS:
        raise ValueError(f"unknown build target {target!r}; known: {sorted(TARGETS)}")
    sources, tflags, out_name = TARGETS[target]
    # include order: the build folder's params.h first, then the project's headers; the
    # ap_types as system headers (their own warnings are not ours)
    includes = (f"-I{HLS_DIR / 'include'}", f"-I{HLS_DIR / 'generated'}",
                "-isystem", str(ap_types_dir()))
    flags = (*BASE_FLAGS, *tflags, *extra_flags)
    params = params_text(limits)
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(str(path.relative_to(HLS_DIR)).encode())
        digest.update(path.read_bytes())
    digest.update(params.encode())
    digest.update(" ".join((*flags, *includes, *sources)).encode())
    digest.update(_compiler_id().encode())
    out_dir = BUILD_ROOT / f"{target}-{digest.hexdigest()[:16]}"
    out = out_dir / out_name
    if out.is_file():
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    # one builder per folder: concurrent test processes wait instead of racing
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        (out_dir / "params.h").write_text(params)
        with atomic_path(out) as tmp:  # a failed build leaves no half-written binary
            cmd = ["nice", CXX, *flags, f"-I{out_dir}", *includes,
                   *(str(HLS_DIR / src) for src in sources), "-o", str(tmp)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise BuildError(f"build of {target} failed:\n{' '.join(cmd)}\n{proc.stderr[-6000:]}")
            os.chmod(tmp, 0o755)
    return out


@dataclass
class CsimReport:
    """Outcome of one tb_core run over a .dmtv file."""

    per_class: dict[str, tuple[int, int]]  # class name -> (passed, total)
    passed: int
    total: int
    seconds: float
    log: str

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total

    def table(self) -> str:
        rows = [f"  {name:<20s} {p:>5d} / {t:<5d}" for name, (p, t) in sorted(self.per_class.items())]
        return "\n".join([*rows, f"  {'ALL':<20s} {self.passed:>5d} / {self.total:<5d}"
                                 f"  ({self.seconds:.2f} s)"])


def run_csim(vectors: Path, limits: CoreLimits | None = None) -> CsimReport:
    """Build tb_core for `limits` and run it over `vectors` (a .dmtv file)."""
    from deltamtl.contract.vectors import CLASSES

    exe = build("tb_core", limits)
    start = time.monotonic()
    proc = subprocess.run([str(exe), str(vectors)], capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    per_class, passed, total = {}, 0, 0
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["CLASS"]:
            cid = int(parts[1])
            name = CLASSES[cid] if cid < len(CLASSES) else f"class{cid}"
            per_class[name] = (int(parts[2]), int(parts[3]))
        elif parts[:1] == ["RESULT"]:
            passed, total = int(parts[1]), int(parts[2])
    if proc.returncode not in (0, 1) or total == 0:
        raise BuildError(f"{exe} {vectors}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return CsimReport(per_class, passed, total, seconds, proc.stdout + proc.stderr)


def run_tb_system(cases: Path, limits: CoreLimits | None = None,
                  sanitize: bool = False) -> tuple[int, int, str]:
    """Build tb_system (optionally with AddressSanitizer) and run it over a .dmtd file:
    (passed, total, log)."""
    flags = ("-fsanitize=address", "-fno-omit-frame-pointer", "-g") if sanitize else ()
    exe = build("tb_system", limits, extra_flags=flags)
    proc = subprocess.run([str(exe), str(cases)], capture_output=True, text=True, check=False)
    found = re.search(r"^RESULT (\d+) (\d+)$", proc.stdout, re.MULTILINE)
    if proc.returncode not in (0, 1) or found is None:
        raise BuildError(f"{exe} {cases}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return int(found.group(1)), int(found.group(2)), proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="g++ builds and C simulation of the HLS kernels")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build one target and print its path")
    b.add_argument("target", choices=sorted(TARGETS))
    c = sub.add_parser("csim", help="generate random vectors (or take a file) and run tb_core")
    h = sub.add_parser("params", help="write the params.h of a build (Vitis: DMTL_PARAMS_DIR)")
    h.add_argument("--out", type=Path, required=True)
    for p in (b, c, h):
        p.add_argument("--limits", nargs="+", metavar="N",
                       help=f"{LIMITS_HELP} (default: hls/generated/params.h)")
        p.add_argument("--params", type=Path, help="a generated params.h to take the limits from")
    c.add_argument("--vectors", type=Path, help="existing .dmtv file (limits must match the build's)")
    c.add_argument("--sequences", type=int, default=100)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", type=Path, default=BUILD_ROOT / "csim.dmtv")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        print(build(args.target, _cli_limits(args)))
        return 0
    if args.cmd == "params":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(params_text(_cli_limits(args)))
        print(args.out)
        return 0
    build_limits = _cli_limits(args)
    vectors = args.vectors
    if vectors is None:
        from deltamtl.contract.vectors import generate_random_vectors, write_vectors

        limits = build_limits or limits_from_params_header()
        write_vectors(args.out, generate_random_vectors(limits, args.sequences, args.seed), limits)
        vectors = args.out
    report = run_csim(vectors, build_limits)
    print(f"csim: tb_core over {vectors}")
    print(report.table())
    if not report.ok:
        print(report.log, file=sys.stderr)
    if (build_limits or limits_from_params_header()).beat_words != 1:
        # fetch and commit move one word per beat in this phase (ddr_image refuses B > 1)
        print("csim: tb_system skipped: the system path (fetch -> core -> commit) is B = 1 only")
        return 0 if report.ok else 1
    # the same jobs as DDR images through fetch -> core -> commit (plus malformed descriptors)
    import numpy as np
    from deltamtl.contract.ddr_image import ddr_cases_from_records, write_ddr_cases
    from deltamtl.contract.vectors import read_vectors

    limits, records = read_vectors(vectors)
    cases = ddr_cases_from_records(records, limits, np.random.default_rng(args.seed))
    ddr = args.out.with_suffix(".dmtd")
    write_ddr_cases(ddr, cases, limits)
    build("tb_system", build_limits)  # compile outside the timed run
    start = time.monotonic()
    passed, total, log = run_tb_system(ddr, build_limits)
    print(f"csim: tb_system (fetch -> core -> commit) over {ddr}: {passed} / {total} cases "
          f"({time.monotonic() - start:.2f} s)")
    if passed != total:
        print(log, file=sys.stderr)
    return 0 if report.ok and passed == total else 1

