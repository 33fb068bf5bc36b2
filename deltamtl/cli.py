"""`deltamtl` command: the one front door to every stage, in data-flow order.

Make targets call it; under DDP: ``torchrun --nproc_per_node=N --no-python deltamtl train ...``
(or ``torchrun ... -m deltamtl train ...``).

Each subcommand forwards its arguments to the `main(argv)` of the module that owns the
stage, imported only when asked (so `deltamtl codegen` does not import torch).

Bad input is not a crash: a :class:`deltamtl.contract.errors.UserInputError` (a config,
override, checkpoint, vector file, bundle ...) or a missing/unreadable file named by the
OS error ends the command with one line ``deltamtl <command>: error: <what, where, value>``
on stderr and exit status 2, as argparse does for bad arguments. Any other exception is a
bug and keeps its traceback. Developers get the traceback of input errors too with
``deltamtl --traceback <command> ...`` or ``DELTAMTL_TRACEBACK=1``.
"""

from __future__ import annotations

import importlib
import os
import sys

from deltamtl.contract.errors import UserInputError, one_line

COMMANDS: dict[str, tuple[str, str]] = {
    # contract: the one definition and its generated copies
    "codegen": ("deltamtl.contract.codegen", "regenerate the C++/SV contract headers and core params"),
    "vectors": ("deltamtl.contract.vectors", "write random core test vectors (.dmtv)"),
    "platform": ("deltamtl.contract.platform_files", "regenerate the Vivado TCL/wrapper, write a .hwh"),
    # model: data -> training -> sharing -> quantisation/export
    "data": ("deltamtl.model.data.cli", "synthetic video: bench, preview, export as NYUD layout"),
    "train": ("deltamtl.model.training.train", "train a model (recipes: st, step1, step2, step3, ...)"),
    "evaluate": ("deltamtl.model.training.evaluate_checkpoint", "evaluate a checkpoint on held-out clips"),
    "sharing-train": ("deltamtl.model.sharing.train_steps", "the three sharing steps for every sub-task"),
    "sharing-report": ("deltamtl.model.sharing.report", "computation-sharing tables and figures"),
    "quant": ("deltamtl.model.quant.cli", "quantise / export / inspect a bundle"),
    # hardware: HLS kernels and the RTL twin
    "hls": ("deltamtl.hls.build", "build the C++ kernels with g++, run C simulation"),
    "hls-static": ("deltamtl.hls.static_checks", "static Vitis-rule checks of the kernel sources"),
    "hls-report": ("deltamtl.hls.csynth_report", "check a csynth report: II=1 loops, 300 MHz clock"),
    "hls-resources": ("deltamtl.hls.resources", "analytic DSP/BRAM/URAM/LUT/FF estimate of the HLS core"),
    "rtl": ("deltamtl.rtl.sim", "Verilator lint of the RTL core, replay a .dmtv file on it"),
    "rtl-synth": ("deltamtl.rtl.yosys_synth", "yosys resource estimates of the RTL core"),
    # host: the integer pipeline on a bundle
    "verify": ("deltamtl.host.verify", "validate a bundle and run the golden model on a clip"),
    "model-vectors": ("deltamtl.host.model_vectors", "dump a trained model's site jobs (.dmtv)"),
    "stream": ("deltamtl.host.stream", "stream video through a backend: overlays, statistics, report"),
    # the board: deployment folder from a built bitstream
    "package": ("deltamtl.package", "bitstream + hwh + bundle + host code for the board"),
    # the whole mission and its figures
    "demo": ("deltamtl.demo", "synthetic video -> train -> quantise -> accelerator -> report"),
    "bench": ("deltamtl.bench", "figures: footage, sharing, engine, board projection, CPU"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_m, help_) in COMMANDS.items())
    return (f"usage: deltamtl [--traceback] <command> [args...]\n\ncommands:\n{rows}\n\n"
            "--traceback (or DELTAMTL_TRACEBACK=1): show the traceback of input errors too\n")


# OS errors that mean "the path the user gave is wrong", not a bug
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def input_error_line(exc: BaseException) -> str | None:
    """The one-line report of a user-input error, or None for anything else (a bug)."""
    if isinstance(exc, UserInputError):
        return one_line(exc)
    if type(exc) is FileNotFoundError and getattr(exc, "filename", None) is None and str(exc):
        return one_line(exc)  # raised by a stage with its own message ("<path>: no ... (run ...)")
    if isinstance(exc, _PATH_ERRORS) and getattr(exc, "filename", None) is not None:
        what = {FileNotFoundError: "no such file or folder", IsADirectoryError: "is a folder",
                NotADirectoryError: "a parent is not a folder",
                PermissionError: "permission denied"}[type(exc)]
        return f"{exc.filename}: {what}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    traceback = os.environ.get("DELTAMTL_TRACEBACK", "").strip() not in ("", "0")
    if args and args[0] == "--traceback":
        traceback, args = True, args[1:]
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"deltamtl: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    entry = getattr(module, "main", None)
    if entry is None:
        print(f"deltamtl: {COMMANDS[name][0]} has no main(argv)", file=sys.stderr)
        return 2
    # argparse names the program after argv[0]: make its usage/errors say `deltamtl <command>`
    saved, sys.argv = sys.argv, [f"deltamtl {name}", *rest]
    try:
        result = entry(rest)
    except Exception as exc:
        line = input_error_line(exc)
        if line is None or traceback:
            raise
        print(f"deltamtl {name}: error: {line}", file=sys.stderr)
        return 2
    finally:
        sys.argv = saved
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
