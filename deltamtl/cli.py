"""`deltamtl` command: one front door to every stage, in data-flow order.

Each subcommand forwards its arguments to the `main(argv)` of the module that owns the
stage, imported only when asked (so `deltamtl codegen` does not import torch).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("deltamtl.model.train", "train a model (recipes: st, step1, step2, step3, ...)"),
    "evaluate": ("deltamtl.model.evaluate", "evaluate a checkpoint on held-out clips"),
    "sharing-report": ("deltamtl.model.sharing_report", "computation-sharing tables and figures"),
    "quant": ("deltamtl.model.cli_quant", "quantise / export / inspect / verify a bundle"),
    "vectors": ("deltamtl.model.vectors", "write random core test vectors (.dmtv)"),
    "model-vectors": ("deltamtl.model.vectors_model", "dump a trained model's site jobs"),
    "codegen": ("deltamtl.codegen", "regenerate C++/SV contract headers and core params"),
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
