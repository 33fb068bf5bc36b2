"""`deltamtl stream` end to end on a few frames: MP4, GIF, PNG, statistics (schema
checked), report; bad options are named."""

from __future__ import annotations

import json

import imageio.v3 as iio
import pytest
from deltamtl.cli import main as cli_main
from deltamtl.host.stats import check_schema
from deltamtl.model.export.bundle import write_bundle

from tests.helpers.streaming import small_model

FRAMES = 6


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_bundle(small_model(th=4, interval=3), tmp_path_factory.mktemp("b") / "bundle")


def test_stream_writes_every_output(bundle, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    rc = cli_main(["stream", "--bundle", str(bundle), "--source", "synthetic:7,8", "--frames", "3",
                   "--backend", "golden", "--keyframes", "off", "--drift", "--no-progress",
                   "--out", str(out)])
    assert rc == 0
    for name in ("overlays.mp4", "overlays.gif", "grid.png", "stats.jsonl", "summary.json",
                 "report.md", "macs.png", "density.png", "times.png"):
        assert (out / name).stat().st_size > 0, name
    rows = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == FRAMES  # two synthetic clips of 3 frames
    for row in rows:
        check_schema(row)
        assert set(row["macs"]) == {"semseg", "depth", "normals", "edges"}
        assert row["register_accesses"] is None  # golden counts none
    assert rows[0]["reason"] == "first" and not any(r["keyframe"] for r in rows[1:])
    mp4 = iio.imread(out / "overlays.mp4", plugin="FFMPEG")
    gif = iio.imread(out / "overlays.gif", index=None)
    assert mp4.shape[0] == FRAMES and gif.shape[0] == FRAMES
    assert mp4.shape[2] == 5 * mp4.shape[1]  # frame + four task panels side by side
    summary = json.loads((out / "summary.json").read_text())
    assert summary["drift"]["ok"] and summary["totals"]["frames"] == FRAMES
    report = (out / "report.md").read_text()
    assert "No drift: **PASS** over 6 frames" in report and "| all |" in report
    assert "stream: 6 frames" in capsys.readouterr().out


def test_stream_emulated_adaptive_stats_only(bundle, tmp_path) -> None:
    out = tmp_path / "run"
    rc = cli_main(["stream", "--bundle", str(bundle), "--source", "synthetic:1", "--frames", "4",
                   "--backend", "emulated", "--keyframes", "adaptive", "--threshold", "depth=2",
                   "--boundary", "edges=0", "--no-video", "--no-progress", "--out", str(out)])
    assert rc == 0 and not (out / "overlays.mp4").exists()
    rows = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["keyframe"] == (r["reason"] is not None) for r in rows)
    assert any(k.startswith("edges/blocks.1") for k in rows[1]["density"])  # edges above l=0


@pytest.mark.parametrize("args, match", [
    (["--backend", "fpga"], "--backend 'fpga'"),
    (["--keyframes", "sometimes"], "keyframe mode 'sometimes'"),
    (["--threshold", "depth=x"], "--threshold 'depth=x'"),
    (["--threshold", "depth=300"], "thresholds of depth"),
    (["--backend-option", "bitstream"], "--backend-option 'bitstream': expected KEY=VALUE"),
    (["--source", "camera:x"], "source 'camera:x': expected camera:N"),
])
def test_stream_bad_options_are_named(bundle, tmp_path, capsys, args, match) -> None:
    with pytest.raises(SystemExit):
        cli_main(["stream", "--bundle", str(bundle), "--source", "synthetic:1", "--frames", "2",
                  "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert match in err, err


def test_stream_missing_bundle_is_named(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["stream", "--bundle", str(tmp_path / "nope"), "--source", "synthetic:1",
                  "--out", str(tmp_path / "o")])
    assert f"--bundle '{tmp_path / 'nope'}'" in capsys.readouterr().err
