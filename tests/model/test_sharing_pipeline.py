"""End to end on a reduced budget: base -> steps 1-3 -> threshold inference -> report.

Checks the pipeline's invariants on real (tiny, few-step) training runs: masks fixed after
step 2 (and equal to the deterministic gates of step 1), deltas exactly zero where masked,
threshold 0 equals the dense models, executed MACs equal the mode formulas, and the report
command writes its table and figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from deltamtl.model.checkpoint import load_checkpoint
from deltamtl.model.config import load_config
from deltamtl.model.sharing.delta import GateConfig, delta_modules
from deltamtl.model.sharing.reuse import EXTRAS_BLOCK, Policy, ReuseEngine, clip_frames
from deltamtl.model.sharing.subtasks import BASE_TASK, SUB_TASKS, block_sites, load_subtask
from deltamtl.model.sharing.train_steps import run_all
from deltamtl.model.training import metrics  # noqa: F401  (an import error fails, never skips)

pytestmark = pytest.mark.sharing  # make test-sharing

OVERRIDES = [
    "model.img_size=16", "model.patch_size=4", "model.embed_dim=24", "model.depth=2",
    "model.num_heads=2", "model.head_channels=4", "data.train_clips=2", "data.val_clips=1",
    "data.test_clips=1", "data.frames_per_clip=6", "train.batch_size=4", "train.threads=1",
    "train.log_every=1", "sharing.steps_step1=3", "sharing.steps_step2=2",
    "sharing.steps_step3=2", "sharing.hard_concrete.log_alpha_init=0.3",
    "sharing.lr_log_alpha=0.5", "sharing.lr_step1=1e-2", "sharing.lambda_w=1e-2",
    "sharing.threshold_grid=[0.0, 0.2]", "sharing.report_val_clips=1",
    "sharing.report_test_clips=2",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[dict, Path]:
    from deltamtl.model.training.train import train

    tmp = tmp_path_factory.mktemp("sharing")
    paths = [f"sharing.base_checkpoint={tmp}/st_semseg/last.pt",
             f"sharing.st_checkpoint={tmp}/st_{{task}}/last.pt", f"sharing.out_root={tmp}/sharing"]
    cfg = load_config("configs/tiny.yaml", OVERRIDES + paths)
    for task in (BASE_TASK, *SUB_TASKS):
        st_cfg = load_config("configs/tiny.yaml", OVERRIDES + paths + [
            "train.steps=2", "train.eval_every=2", "train.ckpt_every=2"])
        train(st_cfg, "st", tmp / f"st_{task}", task=task, progress=False)
    run_all(cfg, SUB_TASKS)
    return cfg, tmp


def _ckpt(tmp: Path, task: str, step: int) -> dict:
    return load_checkpoint(tmp / "sharing" / task / f"step{step}" / "last.pt")


def _gates_open(state: dict, prefix: str, gate: GateConfig) -> torch.Tensor:
    """Where a step-1 state's deterministic gates (element x tensor) are non-zero, computed
    from the Hard-Concrete formula rather than by the code under test."""
    def z(log_alpha: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(log_alpha) * (gate.limit_r - gate.limit_l) + gate.limit_l).clamp(0, 1)

    return (z(state[prefix + "element_gate.log_alpha"]) * z(state[prefix + "tensor_gate.log_alpha"])) > 0


def test_masks_fixed_after_step2_and_masked_deltas_zero(trained) -> None:
    cfg, tmp = trained
    gate = GateConfig.from_sharing(cfg["sharing"])
    for task in SUB_TASKS:
        s1, s2, s3 = (_ckpt(tmp, task, s)["model"] for s in (1, 2, 3))
        n_masked = 0
        for key, mask2 in s2.items():
            if not key.endswith(".mask"):
                continue
            prefix = key[: -len("mask")]
            assert torch.equal(mask2, _gates_open(s1, prefix, gate)), key
            assert torch.equal(s3[key], mask2), f"mask of {key} changed in step 3"
            assert bool(s2[prefix + "is_fixed"]) and bool(s3[prefix + "is_fixed"])
            assert not bool(s1[prefix + "is_fixed"])
            for state in (s2, s3):
                assert torch.all(state[prefix + "delta"][~mask2] == 0), key
            n_masked += int((~mask2).sum())
        assert n_masked > 0, f"{task}: the L0 penalty pruned nothing"


def _system(cfg: dict, tmp: Path):
    from deltamtl.model.sharing.report import load_st_models

    base = load_st_models(cfg, torch.device("cpu"))[BASE_TASK]
    gate = GateConfig.from_sharing(cfg["sharing"])
    subs = {t: load_subtask(base, t, cfg, gate, _ckpt(tmp, t, 3)["model"]).eval()
            for t in SUB_TASKS}
    return base, subs


def test_threshold_zero_equals_dense_on_trained_models(trained) -> None:
    from deltamtl.model.training.recipe import synthetic_split

    cfg, tmp = trained
    base, subs = _system(cfg, tmp)
    frames, _ = clip_frames(synthetic_split(cfg, "val").clips)
    with torch.no_grad():
        dense = [{BASE_TASK: base(f)[BASE_TASK], **{t: m(f)[t] for t, m in subs.items()}}
                 for f in frames]
    policy = Policy(depth=2, keyframe_interval=3, boundaries={"depth": 0, "normals": -1,
                                                              "edges": 1})
    with ReuseEngine(base, subs, policy) as eng:
        outs = list(eng.run_clip(frames))
    for o, d in zip(outs, dense, strict=True):
        for t in d:
            torch.testing.assert_close(o[t], d[t], rtol=1e-5, atol=1e-5)


def test_executed_macs_equal_formulas_on_trained_models(trained) -> None:
    from deltamtl.model.training.recipe import synthetic_split

    cfg, tmp = trained
    base, subs = _system(cfg, tmp)
    frames, _ = clip_frames(synthetic_split(cfg, "val").clips)
    ths = {t: [0.1, 0.3] for t in (BASE_TASK, *SUB_TASKS)}
    policy = Policy(depth=2, keyframe_interval=3, thresholds=ths,
                    boundaries={"depth": 0, "normals": -1, "edges": 1})
    with ReuseEngine(base, subs, policy) as eng:
        list(eng.run_clip(frames))
    widths = {}
    for t, m in [(BASE_TASK, base), *subs.items()]:
        for b, s, mod in block_sites(m):
            nnz_dw = int(torch.count_nonzero(mod.effective_delta_weight())) if t != BASE_TASK else 0
            widths[(t, b, s)] = (mod.out_features, nnz_dw)
    p = frames.shape[1] * 16  # images per frame x tokens
    checked = 0
    for key, macs in eng.ledger.macs.items():
        t, b, s, mode = key
        if b == EXTRAS_BLOCK or s == "patch_embed" or mode == "DENSE":
            continue
        out_dim, nnz_dw = widths[(t, b, s)]
        nnz = eng.ledger.nnz[key]
        if mode == "TASK":
            assert macs == nnz * out_dim + p * eng.ledger.calls[key] * nnz_dw
        else:
            assert macs == nnz * out_dim
        checked += 1
    assert checked > 0


def test_report_command_writes_table_and_figures(trained) -> None:
    from deltamtl.model.sharing.report import ROWS, build_report, report_value, write_report

    cfg, tmp = trained
    report = build_report(cfg, "test", log=lambda m: None)
    written = write_report(report, tmp / "report")
    assert all(p.is_file() and p.stat().st_size > 0 for p in written)
    data = json.loads((tmp / "report" / "report.json").read_text())
    assert [r["row"] for r in data["rows"]] == list(ROWS)
    st, ws = data["rows"][0], data["rows"][1]
    assert ws["params"] < st["params"]  # deltas were pruned and embeddings shared
    assert set(data["boundaries"]) == set(SUB_TASKS)
    assert data["clips"] == {"val": 1, "test": 2}  # sharing.report_*_clips, not data.*
    # Each task's threshold level: walking up the grid, the last level before the first whose
    # paired cost against the same model run densely exceeds the margin.
    margin = report_value(cfg, "threshold_margin")
    trials = sorted(data["threshold_trials"], key=lambda tr: tr["rel"])
    for task, rel in data["threshold_rel"].items():
        passing = [tr["threshold_cost"][task] <= margin for tr in trials]
        n_ok = passing.index(False) if False in passing else len(passing)
        assert rel == trials[max(n_ok - 1, 0)]["rel"]
    md = (tmp / "report" / "report.md").read_text()
    assert "+task+temporal act sharing" in md and "Acceptance" in md
    # Each sub-task's delta parameters are counted once per checkpoint.
    deltas = sum(len(delta_modules(m)) for m in _system(cfg, tmp)[1].values())
    assert deltas == 3 * 2 * 4


def test_step2_cap_keeps_exactly_max_delta_nnz(trained, tmp_path) -> None:
    """sharing.max_delta_nnz bounds the mask step 2 fixes; steps=(2,) goes on from a step 1."""
    from deltamtl.model.config import apply_overrides

    cfg, _ = trained
    task = "normals"
    # no L0 pressure: every gate stays open after step 1, so the cap is what prunes
    cfg = apply_overrides(cfg, [f"sharing.out_root={tmp_path}", "sharing.lambda_w=0"])
    run_all(cfg, [task], steps=(1,))
    s1 = load_checkpoint(tmp_path / task / "step1" / "last.pt")["model"]
    gate = GateConfig.from_sharing(cfg["sharing"])
    open_ = {}
    for key in s1:
        if key.endswith(".element_gate.log_alpha"):
            prefix = key[: -len("element_gate.log_alpha")]
            open_[prefix + "mask"] = _gates_open(s1, prefix, gate)
    wanted = sum(int(m.sum()) for m in open_.values())
    cap = wanted // 3
    assert cap > 0, "step 1 closed every gate: nothing to cap"
    run_all(apply_overrides(cfg, [f"sharing.max_delta_nnz={cap}"]), [task], steps=(2,))
    state = load_checkpoint(tmp_path / task / "step2" / "last.pt")["model"]
    masks = {k: v for k, v in state.items() if k.endswith(".mask")}
    assert masks.keys() == open_.keys()
    assert sum(int(v.sum()) for v in masks.values()) == cap
    for key, mask in masks.items():
        assert torch.all(mask <= open_[key]), f"{key}: the cap added entries"
        assert torch.all(state[key[: -len("mask")] + "delta"][~mask] == 0), key
    assert not (tmp_path / task / "step3").exists()


@pytest.mark.parametrize("steps", ["4", "1,x", ","])
def test_sharing_train_names_a_bad_steps_list(steps: str, capsys) -> None:
    from deltamtl.model.sharing.train_steps import main

    with pytest.raises(SystemExit):
        main(["--config", "configs/tiny.yaml", "--steps", steps])
    assert f"--steps {steps!r}: expected step numbers from 1, 2, 3" in capsys.readouterr().err
