"""`deltamtl` command: the one front door to every stage, in data-flow order.

Make targets call it; under DDP: ``torchrun --nproc_per_node=N --no-python deltamtl train ...``
(or ``torchrun ... -m deltamtl train ...``).

Each subcommand forwards its arguments to the `main(argv)` of the module that owns the
stage, imported only when asked (so `deltamtl codegen` does not import torch).
"""

from __future__ import annotations

import importlib
import sys

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
    return f"usage: deltamtl <command> [args...]\n\ncommands:\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
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
    result = entry(rest)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
