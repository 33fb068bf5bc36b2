"""`deltamtl quant` (quantise with accuracy report, export + ONNX, inspect) and `deltamtl verify`,
with their refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from deltamtl.host.verify import main as verify_main
from deltamtl.model.quant.cli import main

from tests.helpers import seeding

pytestmark = pytest.mark.quant  # make test-quant

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
SMALL_DATA = ["--set", "data.val_clips=1", "--set", "data.test_clips=1", "--set", "data.frames_per_clip=4",
              "--set", "sharing.quant={calib_batches: 1}", "--set", "model.img_size=32"]


def test_quantise_inspect_verify(tmp_path: Path, capsys) -> None:
    seed = str(seeding.seed_for("test_quantise_inspect_verify", bits=20))
    cfg = str(ROOT / "configs" / "tiny.yaml")
    out = tmp_path / "q"
    assert main(["quantise", "--config", cfg, "--random", seed, "--out", str(out), *SMALL_DATA]) == 0
    rep = json.loads((out / "quant_report.json").read_text())
    assert set(rep["accuracy"]) == {"semseg", "depth", "normals", "edges"}
    for a in rep["accuracy"].values():
        assert np.isfinite(a["float"]) and np.isfinite(a["quant"]) and "worse_rel" in a
    assert "[quant] semseg" in capsys.readouterr().out
    assert main(["inspect", str(out / "bundle")]) == 0
    text = capsys.readouterr().out
    assert "blocks.1.mlp.fc2" in text and "dW depth" in text
    res = tmp_path / "verify.json"
    assert verify_main([str(out / "bundle"), "--config", cfg, "--frames", "3", "--json", str(res)]) == 0
    v = json.loads(res.read_text())
    assert v["frames"] == 3 and set(v["metrics"]) == {"semseg", "depth", "normals", "edges"}
    assert all(pf["macs"] > 0 for pf in v["per_frame"].values())
    # a corrupted bundle is refused with the file named
    w = next((out / "bundle" / "arrays" / "sites" / "blocks.0.attn.qkv").glob("w.bin"))
    w.write_bytes(w.read_bytes()[:-1])
    assert verify_main([str(out / "bundle"), "--config", cfg]) == 1
    assert "w.bin" in capsys.readouterr().err


def test_export_with_onnx(tmp_path: Path, capsys) -> None:
    cfg = str(ROOT / "configs" / "tiny.yaml")
    assert main(["export", "--config", cfg, "--random", "1", "--out", str(tmp_path / "b"),
                 "--onnx", str(tmp_path / "onnx"), *SMALL_DATA]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(res["bundle"]) == tmp_path / "b" and (tmp_path / "b" / "manifest.yaml").is_file()
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == [
        "depth.onnx", "edges.onnx", "normals.onnx", "semseg.onnx"]


@pytest.mark.slow
def test_demo_step_quantises_and_exports(tmp_path: Path, capsys) -> None:
    """The `make demo` step on whatever the repository has (trained checkpoints or not)."""
    import os

    from deltamtl.model.quant.cli import run_quant_export_demo

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        res = run_quant_export_demo(tmp_path / "demo")
    finally:
        os.chdir(cwd)
    assert (tmp_path / "demo" / "bundle" / "manifest.yaml").is_file()
    assert res["summary"]["n_sites"] == 1 + 4 * 6 or res["source"] == "random"
    assert "storage:" in capsys.readouterr().out


def test_float_policy_from_sharing_report(tmp_path: Path) -> None:
    from deltamtl.model.config import load_config
    from deltamtl.model.quant.cli import float_policy

    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    assert float_policy(cfg, tmp_path / "absent.json") is None
    rep = {"thresholds": {"semseg": [0.1] * 6, "depth": [0.05] * 6}, "boundaries": {"depth": 2}}
    (tmp_path / "report.json").write_text(json.dumps(rep))
    pol = float_policy(cfg, tmp_path / "report.json")
    assert pol.keyframe_interval == cfg["sharing"]["keyframe_interval"]
    assert pol.thresholds["depth"] == [0.05] * 6 and pol.boundaries == {"depth": 2}


def test_float_policy_rejects_a_report_for_another_depth(tmp_path: Path) -> None:
    from deltamtl.model.config import load_config
    from deltamtl.model.quant.cli import float_policy

    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    rep = tmp_path / "report.json"
    rep.write_text(json.dumps({"thresholds": {"depth": [0.1] * (cfg["model"]["depth"] + 1)}}))
    with pytest.raises(ValueError, match=rf"{rep}: thresholds\.depth has 7 per-block values.*6 blocks"):
        float_policy(cfg, rep)
