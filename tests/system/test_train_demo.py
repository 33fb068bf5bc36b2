"""`make demo` driver on a very small config: every step runs and the report is complete."""

from __future__ import annotations

import json

import pytest

SMALL = [
    "model.img_size=32", "model.patch_size=8", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
    "model.head_channels=8", "data.train_clips=2", "data.val_clips=1", "data.test_clips=1",
    "data.frames_per_clip=4", "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1",
    "eval.batch_size=8",
]


def _load_demo():
    from deltamtl import demo

    return demo


def test_demo_steps_and_report(tmp_path, monkeypatch):
    monkeypatch.setenv("DELTAMTL_DATA_CACHE", str(tmp_path / "cache"))
    demo = _load_demo()
    names = ["render", "train_base", "evaluate", "preview", "sharing", "quantise_export", "emulate",
             "stream"]
    assert [s.name for s in demo.STEPS] == names
    out = tmp_path / "demo"
    rc = demo.main(["--out", str(out), "--steps", "3", "--threads", "1", "--st-runs", "", "--sharing-steps", "2,1,1",
                    "--backend", "golden", *[a for kv in SMALL for a in ("--set", kv)]])
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) == set(names)
    assert report["results"]["train_base"]["steps"] == 3
    quant = report["results"]["quantise_export"]
    tasks = ["semseg", "depth", "normals", "edges"]  # the sharing chain trained all three sub-tasks
    assert quant["tasks"] == tasks
    assert set(quant["accuracy"]) == set(tasks) and (out / "bundle" / "manifest.yaml").is_file()
    stream = report["results"]["stream"]
    assert stream["tasks"] == tasks and stream["frames"] == 2 * demo.STREAM_FRAMES
    assert stream["keyframes"][0] == [0, "first"] and stream["bit_exact_vs_golden"]
    assert 0 < stream["macs_executed"] < stream["macs_four_single_task_models"]
    for name in ("overlays.mp4", "overlays.gif", "grid.png", "stream_predictions.png", "stats.jsonl"):
        assert (out / "stream" / name).stat().st_size > 0, name
    emulate = report["results"]["emulate"]
    # patch embedding (the base's) + 4 sites per block for each of the four tasks, every
    # frame, compared bit for bit
    assert emulate["site_outputs_compared"] == demo.EMULATE_FRAMES * (1 + 4 * 1 * len(tasks))
    assert emulate["mismatches"] == 0 and emulate["per_task"]["semseg"]["macs"] > 0
    accept = report["results"]["evaluate"]["acceptance"]["semseg"]
    assert rc == (0 if accept["pass"] else 1)
    md = (out / "report.md").read_text()
    assert "| semseg | mIoU |" in md and "clip_gt.png" in md and "preview_test.png" in md
    assert "four single-task models, dense" in md and "stream/overlays.gif" in md
    for name in ("clip_gt.png", "preview_test.png", "eval_test.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "st_semseg" / "last.pt").is_file()
    assert "NaN" not in (out / "report.json").read_text()  # strict JSON (absent classes -> null)


def test_appended_step_lands_in_report(tmp_path):
    demo = _load_demo()
    from deltamtl.model.config import load_config

    cfg = load_config("configs/tiny.yaml", SMALL)
    ctx = demo.DemoContext(cfg=cfg, out=tmp_path, config_path="configs/tiny.yaml", steps=1)
    extra = demo.Step("extra", "A later stage", lambda c: {"value": 42, "seen": sorted(c.results)})
    results = demo.run_demo(ctx, [demo.Step("first", "A first stage", lambda c: {"ok": True}), extra])
    assert results["extra"] == {"value": 42, "seen": ["first"]}
    assert "## extra: A later stage" in (tmp_path / "report.md").read_text()
    with pytest.raises(ZeroDivisionError):
        demo.run_demo(ctx, [demo.Step("boom", "fails", lambda c: 1 / 0)])
