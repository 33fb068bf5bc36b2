"""`deltamtl <command>` on bad input: one stderr line `deltamtl <command>: error: ...`, status 2,
no traceback; `--traceback` / DELTAMTL_TRACEBACK=1 give developers the traceback back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltamtl import cli
from deltamtl.contract.file_layouts import VectorFileError


def _damaged_vectors(tmp_path: Path) -> Path:
    path = tmp_path / "bad.dmtv"
    path.write_bytes(b"XXXX" + bytes(60))
    return path


def _one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"deltamtl {command}: error: "), err
    return err[0]


def test_a_damaged_vector_file_is_one_line(tmp_path: Path, capsys) -> None:
    path = _damaged_vectors(tmp_path)
    assert cli.main(["rtl", "vectors", str(path)]) == 2
    line = _one_error_line(capsys, "rtl")
    assert line.endswith(f"{path}: file header: magic b'XXXX', expected b'DMTV' (not a .dmtv file)")


def test_a_bad_config_override_is_one_line(tmp_path: Path, capsys) -> None:
    rc = cli.main(["train", "--config", "configs/tiny.yaml", "--task", "semseg", "--out",
                   str(tmp_path / "run"), "--set", "train.steps=2.5"])
    assert rc == 2
    line = _one_error_line(capsys, "train")
    assert line.endswith("configs/tiny.yaml (override): train.steps: expected an integer, got float 2.5")
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_a_missing_config_file_is_one_line(tmp_path: Path, capsys) -> None:
    absent = tmp_path / "absent.yaml"
    assert cli.main(["train", "--config", str(absent), "--out", str(tmp_path / "run")]) == 2
    assert _one_error_line(capsys, "train").endswith(f"{absent}: no such config file")


def test_a_missing_path_raised_by_a_stage_is_one_line(tmp_path: Path, capsys) -> None:
    assert cli.main(["hls-report", str(tmp_path / "nowhere"), "--kernel", "core"]) == 2
    assert "nowhere" in _one_error_line(capsys, "hls-report")


def test_bad_arguments_are_argparse_errors_named_after_the_command(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["vectors", str(tmp_path / "v.dmtv"), "--seed", "abc"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "deltamtl vectors: error: argument --seed: expected an integer >= 0, got 'abc'" in err
    assert sys.argv[0] != "deltamtl vectors"  # restored
    with pytest.raises(SystemExit):
        cli.main(["vectors", str(tmp_path / "v.dmtv"), "--sequences", "-5"])
    assert "argument --sequences: expected an integer >= 0, got -5" in capsys.readouterr().err
    assert not (tmp_path / "v.dmtv").exists()


def test_traceback_escape_hatch(tmp_path: Path, monkeypatch) -> None:
    path = _damaged_vectors(tmp_path)
    with pytest.raises(VectorFileError):
        cli.main(["--traceback", "rtl", "vectors", str(path)])
    monkeypatch.setenv("DELTAMTL_TRACEBACK", "1")
    with pytest.raises(VectorFileError):
        cli.main(["rtl", "vectors", str(path)])


def test_bugs_keep_their_traceback() -> None:
    assert cli.input_error_line(KeyError("x")) is None
    assert cli.input_error_line(RuntimeError("boom")) is None
    assert cli.input_error_line(FileNotFoundError(2, "No such file", "a.bin")) == "a.bin: no such file or folder"


def test_the_installed_command_prints_one_line(tmp_path: Path) -> None:
    path = _damaged_vectors(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "DELTAMTL_TRACEBACK"}
    run = subprocess.run([sys.executable, "-m", "deltamtl", "rtl", "vectors", str(path)],
                         capture_output=True, text=True, env=env, check=False, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"deltamtl rtl: error: {path}: file header: magic b'XXXX', expected b'DMTV' (not a .dmtv file)"]
