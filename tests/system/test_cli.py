"""The `deltamtl` front door dispatches to stage modules and rejects unknown commands."""

import importlib
from pathlib import Path

from deltamtl import cli
from deltamtl.contract.vectors import read_vectors


def test_help_lists_every_command(capsys) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_every_command_reaches_a_main() -> None:
    for name, (module, _help) in cli.COMMANDS.items():
        assert callable(getattr(importlib.import_module(module), "main", None)), name


def test_unknown_command_is_an_error(capsys) -> None:
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_dispatch_runs_the_stage(tmp_path: Path, capsys) -> None:
    out = tmp_path / "v.dmtv"
    assert cli.main(["vectors", str(out), "--sequences", "3", "--seed", "5"]) == 0
    _limits, records = read_vectors(out)
    assert records and str(out) in capsys.readouterr().out
