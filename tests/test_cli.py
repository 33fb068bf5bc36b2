"""The `deltamtl` front door dispatches to stage modules and rejects unknown commands."""

from pathlib import Path

from deltamtl import cli, codegen


def test_help_lists_every_command(capsys) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_unknown_command_is_an_error(capsys) -> None:
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_dispatch_runs_the_stage(capsys) -> None:
    assert cli.main(["codegen"]) == 0
    out = capsys.readouterr().out
    for path in codegen.generated_files():
        assert str(path.relative_to(Path(codegen.ROOT))) in out
