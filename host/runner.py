"""Whole-video runner: integer site jobs through a pluggable executor, host float ops between.

One runner, several executors: a :class:`SiteExecutor` is anything with ``run_job(job) ->
JobResult`` and ``reset()`` -- the numpy golden core, the HLS kernels, the RTL core and the
board driver, chosen by name in :mod:`deltamtl.host.backends`. The runner owns

* the quantised model (:class:`~deltamtl.model.export.quantized_model.QuantizedModel`),
* the reuse state of every (task, layer, site) in host arrays -- the DDR regions
  (x_ref int8 [P, I], y_ref int32 [P, O]),
* the job order of a *multi-task site job*: for each site, the base's job first (DENSE on
  a keyframe, TEMPORAL otherwise; it loads W_b and the base references), then every
  sub-task's TASK job on the *resident* base weights and references (no LOAD_W/LOAD_REF:
  the base references are read from DDR once per site, not once per task), then the
  sub-task jobs that need their own references (TEMPORAL above the boundary, or DENSE when
  task reuse is off), which load them (LOAD_REF) and overwrite the core's reference state,
* per-job accounting: DDR bytes (the contract's region sizes of the regions the job uses)
  and MACs (``deltamtl.contract.macs.job_macs``: DENSE nnz(x)*O, TEMPORAL nnz(d)*O, TASK
  nnz(d)*O + P*nnz(dW); a DENSE/TEMPORAL job's dW is merged into the weight bank).

Keyframes: the first frame after :meth:`GoldenRunner.reset` and every frame i with
(i - key_offset) % K == 0 (i counts frames since the reset), unless ``run_frame`` is told
otherwise by a scheduler. K = 1 disables temporal reuse.

Executors may also implement the optional chained-launch hooks ``prepare_video(plans)``
(both frame plans, once per video), ``begin_frame(keyframe)``, ``end_frame()`` and
``recover()`` (docs/host.md); the golden and emulated executors do not need them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from deltamtl.contract.descriptor import OUTPUT_REGIONS, region_bytes, regions_used
from deltamtl.contract.formats import JobFlag, Mode, quantize_activation
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import JobResult, SiteJob
from deltamtl.contract.macs import job_macs
from deltamtl.contract.packets import HEADER_FIELDS, CoreStatus
from deltamtl.host import float_ops as host_ops
from deltamtl.model.export.quantized_model import QuantizedModel, SiteParams
from deltamtl.model.tasks import BLOCK_SITES, EMBED

# job tags count jobs and wrap at the width of the header's tag field
_TAG_MASK = next(f for f in HEADER_FIELDS if f.name == "tag").mask


# ---------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------
@runtime_checkable
class SiteExecutor(Protocol):
    def run_job(self, job: SiteJob) -> JobResult: ...

    def reset(self) -> None: ...


class AcceleratorFault(RuntimeError):
    """A fault the runner recovers from: the executor is reset (``recover()``, e.g. the
    board's recovery line) and the frame is run again as a keyframe. Raised by executors
    for kernel time-outs and bad status words (host/pynq_driver.py)."""


@dataclass(frozen=True)
class PlannedJob:
    """One job of a frame as the runner will issue it: known before the frame's data, so
    a chained executor can lay out and start the whole frame at once (docs/host.md)."""

    layer: int
    site: str
    task: str
    mode: Mode
    flags: JobFlag
    tokens: int
    in_dim: int
    out_dim: int
    nnz_dw: int


@dataclass
class JobRecord:
    """Accounting of one executed job."""

    frame: int
    task: str
    layer: int
    site: str
    mode: Mode
    flags: JobFlag
    th: int
    macs: int
    bytes_read: int
    bytes_written: int
    nnz_act: int
    nnz_dw: int
    numel_act: int


def job_bytes(job: SiteJob) -> tuple[int, int]:
    """DDR bytes (read, written) of a job: the contract's regions that the job uses."""
    read = written = 0
    for region in regions_used(job.mode, job.flags, job.nnz_dw):
        n = region_bytes(region, job.tokens, job.in_dim, job.out_dim, job.nnz_dw)
        if region in OUTPUT_REGIONS:
            written += n
        else:
            read += n
    return read, written


# ---------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------
InputOverride = Callable[[str, str], "np.ndarray | None"]  # (task, site name) -> int8 X or None


class GoldenRunner:
    """Runs a multi-task video through a :class:`SiteExecutor`, frame by frame."""

    def __init__(self, qm: QuantizedModel, executor: SiteExecutor | None = None,
                 tasks: Sequence[str] | None = None, trace: bool = False) -> None:
        self.qm = qm
        self.executor: SiteExecutor = executor if executor is not None else GoldenCore(qm.core_limits())
        wanted = tuple(tasks) if tasks is not None else qm.tasks
        unknown = [t for t in wanted if t not in qm.tasks]
        if unknown:
            raise KeyError(f"tasks {unknown} not in the model's tasks {qm.tasks}")
        self.tasks = (qm.base,) + tuple(t for t in qm.subtasks if t in wanted)
        self.trace_enabled = trace
        self.records: list[JobRecord] = []
        self.trace: list[dict] = []  # per frame: {(task, site name): (x int8, y int8)}
        self.faults: list[tuple[int, str]] = []  # (frame, message) of recovered faults
        self.reset()

    # DDR regions: per (task, site name) the reference input and accumulator.
    def reset(self) -> None:
        self.executor.reset()
        self.x_ref: dict[tuple[str, str], np.ndarray] = {}
        self.y_ref: dict[tuple[str, str], np.ndarray] = {}
        self.frame_index = 0
        prepare = getattr(self.executor, "prepare_video", None)
        if prepare is not None:  # a chained executor sizes its buffers once per video
            prepare({True: self.frame_plan(True), False: self.frame_plan(False)})

    def frame_plan(self, keyframe: bool) -> list[PlannedJob]:
        """Every job of one frame, in issue order (what :meth:`run_frame` will run)."""
        qm = self.qm
        sites = [(-1, EMBED)] + [(layer, site) for layer in range(qm.depth) for site in BLOCK_SITES]
        out = []
        for layer, site in sites:
            sp = qm.site(layer, site)
            for task, mode, flags in self._plan(sp, keyframe):
                dw = sp.dw.get(task) if task != qm.base else None
                out.append(PlannedJob(layer, site, task, mode, flags, qm.tokens, sp.in_dim,
                                      sp.out_dim, dw.nnz if dw is not None and dw.nnz else 0))
        return out

    def _job(self, sp: SiteParams, task: str, mode: Mode, flags: JobFlag, x: np.ndarray,
             tag: int) -> SiteJob:
        key = (task, sp.name)
        job = SiteJob(mode=mode, flags=flags, th=self.qm.policy.threshold(task, sp.layer), x=x,
                      req_mult=sp.req_mult[task], req_shift=sp.req_shift[task],
                      out_dim=sp.out_dim, tag=tag & _TAG_MASK)
        if flags & JobFlag.LOAD_W:
            job.w = sp.w
        if task != self.qm.base and task in sp.dw and sp.dw[task].nnz:
            job.dw = sp.dw[task]
        if mode == Mode.DENSE:
            job.bias = sp.task_bias(task)
        elif mode == Mode.TASK:
            job.bias = sp.db.get(task, np.zeros(sp.out_dim, np.int32)).astype(np.int32)
        if flags & JobFlag.LOAD_REF:
            if key not in self.x_ref:
                raise RuntimeError(f"{task} {sp.name}: no stored reference (reset at a keyframe)")
            job.x_ref, job.y_ref = self.x_ref[key], self.y_ref[key]
        return job

    def _plan(self, sp: SiteParams, keyframe: bool) -> list[tuple[str, Mode, JobFlag]]:
        """(task, mode, flags) of every job of one multi-task site job, in issue order."""
        pol = self.qm.policy
        emit = JobFlag.EMIT_REF if pol.temporal else JobFlag.NONE
        base_mode = Mode.DENSE if keyframe else Mode.TEMPORAL
        base_flags = JobFlag.LOAD_W | emit | (JobFlag.NONE if keyframe else JobFlag.LOAD_REF)
        plan = [(self.qm.base, base_mode, base_flags)]
        if sp.layer < 0:  # the patch embedding is the base's alone
            return plan
        own_refs: list[tuple[str, Mode, JobFlag]] = []
        for task in self.tasks[1:]:
            above = sp.layer > pol.boundary(task)
            if not pol.task_reuse:
                if keyframe:
                    own_refs.append((task, Mode.DENSE, emit))
                else:
                    own_refs.append((task, Mode.TEMPORAL, JobFlag.LOAD_REF | JobFlag.EMIT_REF))
            elif keyframe:
                plan.append((task, Mode.TASK, emit if above else JobFlag.NONE))
            elif above:
                own_refs.append((task, Mode.TEMPORAL, JobFlag.LOAD_REF | JobFlag.EMIT_REF))
            else:
                plan.append((task, Mode.TASK, JobFlag.NONE))
        return plan + own_refs

    def run_site(self, layer: int, site: str, inputs: Mapping[str, np.ndarray],
                 keyframe: bool) -> dict[str, np.ndarray]:
        """One multi-task site job: int8 inputs per task -> int8 outputs per task."""
        sp = self.qm.site(layer, site)
        out: dict[str, np.ndarray] = {}
        for task, mode, flags in self._plan(sp, keyframe):
            tag = (self.frame_index << 8) ^ (self.qm.tasks.index(task) << 6) ^ (layer + 1)
            job = self._job(sp, task, mode, flags, inputs[task], tag)
            result = self.executor.run_job(job)
            if result.status != CoreStatus.OK:
                raise RuntimeError(
                    f"frame {self.frame_index} {task} {sp.name} {mode.name}: core refused the job "
                    f"(status {CoreStatus(result.status)!r})"
                )
            if flags & JobFlag.EMIT_REF:
                self.x_ref[(task, sp.name)] = result.x_ref
                self.y_ref[(task, sp.name)] = result.y_ref
            rd, wr = job_bytes(job)
            self.records.append(JobRecord(
                frame=self.frame_index, task=task, layer=layer, site=site, mode=mode, flags=flags,
                th=job.th, bytes_read=rd, bytes_written=wr,
                macs=job_macs(mode, job.tokens, job.in_dim, job.out_dim, job.nnz_dw, result.nnz_act),
                nnz_act=result.nnz_act, nnz_dw=job.nnz_dw,
                numel_act=0 if mode == Mode.DENSE else job.x.size,
            ))
            out[task] = result.y
        return out

    def run_frame(self, frame: np.ndarray, override: InputOverride | None = None,
                  keyframe: bool | None = None) -> dict[str, np.ndarray]:
        """One frame; an :class:`AcceleratorFault` resets the executor and runs the frame
        again as a keyframe (once: a second fault propagates). See :meth:`_run_frame`."""
        try:
            return self._run_frame(frame, override, keyframe)
        except AcceleratorFault as fault:
            self.faults.append((self.frame_index, str(fault)))
            recover = getattr(self.executor, "recover", None)
            if recover is not None:
                recover()
            self.executor.reset()
            # the references in flight are lost with the core's state: start over from here
            self.x_ref, self.y_ref = {}, {}
            self.records = [r for r in self.records if r.frame != self.frame_index]
            return self._run_frame(frame, override, True)

    def _run_frame(self, frame: np.ndarray, override: InputOverride | None = None,
                   keyframe: bool | None = None) -> dict[str, np.ndarray]:
        """One frame (uint8 [H, W, 3] or float [3, H, W] in [0, 1]) -> {task: output map}.

        ``override(task, site_name)`` may return an int8 site input to use instead of the
        quantised host value (the bit-exactness test feeds the torch model's inputs).
        ``keyframe`` overrides the bundle's fixed schedule for this frame (a keyframe
        scheduler decides); the first frame after :meth:`reset` is always a keyframe,
        since no reference exists yet.
        """
        qm, mcfg = self.qm, self.qm.mcfg
        scheduled = qm.policy.is_keyframe(self.frame_index)
        keyframe = scheduled if keyframe is None else (bool(keyframe) or self.frame_index == 0)
        self.last_keyframe = keyframe
        begin = getattr(self.executor, "begin_frame", None)
        if begin is not None:  # a chained executor starts the whole frame here
            begin(keyframe)
        base_host = qm.host[qm.base]
        x_norm = host_ops.normalize_image(frame, base_host["pixel_mean"], base_host["pixel_std"])
        states = {t: host_ops.TaskHostState(qm.host[t], mcfg, x_norm) for t in self.tasks}
        trace: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

        def quantised(task: str, sp: SiteParams, x: np.ndarray) -> np.ndarray:
            forced = override(task, sp.name) if override is not None else None
            return forced if forced is not None else quantize_activation(x, sp.s_x)

        sp = qm.site(-1, EMBED)
        x = quantised(qm.base, sp, states[qm.base].embed_input())
        y = self.run_site(-1, EMBED, {qm.base: x}, keyframe)[qm.base]
        if self.trace_enabled:
            trace[(qm.base, sp.name)] = (x, y)
        tokens = y.astype(np.float32) * np.float32(sp.s_y[qm.base])
        for st in states.values():  # sub-tasks share the base's patch and position embeddings
            st.set_embedded(tokens)
        for layer in range(qm.depth):
            for site in BLOCK_SITES:
                sp = qm.site(layer, site)
                xs = {t: quantised(t, sp, states[t].site_input(layer, site)) for t in self.tasks}
                ys = self.run_site(layer, site, xs, keyframe)
                for t in self.tasks:
                    if self.trace_enabled:
                        trace[(t, sp.name)] = (xs[t], ys[t])
                    states[t].site_output(layer, site, ys[t].astype(np.float32) * np.float32(sp.s_y[t]))
        end = getattr(self.executor, "end_frame", None)
        if end is not None:
            end()
        if self.trace_enabled:
            self.trace.append(trace)
        self.frame_index += 1
        return {t: states[t].finish(t) for t in self.tasks}

    def run_clip(self, frames: Iterable[np.ndarray]) -> list[dict[str, np.ndarray]]:
        self.reset()
        return [self.run_frame(f) for f in frames]

    # -- summaries -------------------------------------------------------------------------
    def totals(self, frame: int | None = None) -> dict[str, dict[str, int]]:
        """Per task: MACs, DDR bytes read/written and job count (one frame or all)."""
        out: dict[str, dict[str, int]] = {}
        for r in self.records:
            if frame is not None and r.frame != frame:
                continue
            t = out.setdefault(r.task, {"macs": 0, "bytes_read": 0, "bytes_written": 0, "jobs": 0})
            t["macs"] += r.macs
            t["bytes_read"] += r.bytes_read
            t["bytes_written"] += r.bytes_written
            t["jobs"] += 1
        return out


    def resident_savings(self) -> dict[str, int]:
        """DDR bytes the resident base weights/references saved: what every TASK job would
        read if it loaded W_b, x_ref_b and y_ref_b itself (one job per task, no residency)."""
        saved_w = saved_ref = 0
        for r in self.records:
            if r.mode != Mode.TASK:
                continue
            sp = self.qm.site(r.layer, r.site)
            p, i, o = self.qm.tokens, sp.in_dim, sp.out_dim
            saved_w += o * i
            saved_ref += p * i + 4 * p * o
        total_read = sum(r.bytes_read for r in self.records)
        return {"weights": saved_w, "references": saved_ref, "bytes_read": total_read,
                "bytes_read_without_residency": total_read + saved_w + saved_ref}


class PacketExecutor:
    """A :class:`SiteExecutor` that goes through the AXI4-Stream packets of the core.

    Each job is packed (``pack_job``), run by a packet-level core (``run_packet``: the
    :class:`GoldenCore`, or anything with the same method, e.g. a simulator bridge) and its
    output packet unpacked -- the path the HLS and RTL cores are driven through. Packets
    are laid out in beats of ``beat_words`` words: by default the core's own
    ``limits.beat_words`` (1 for a core without limits).
    """

    def __init__(self, core: object, beat_words: int | None = None) -> None:
        if not hasattr(core, "run_packet") or not hasattr(core, "reset"):
            raise TypeError(f"{type(core).__name__} has no run_packet()/reset()")
        self.core = core
        limits = getattr(core, "limits", None)
        self.beat_words = int(beat_words if beat_words is not None
                              else getattr(limits, "beat_words", 1))
        self.words_in = 0
        self.words_out = 0

    def reset(self) -> None:
        self.core.reset()

    def run_job(self, job: SiteJob) -> JobResult:
        from deltamtl.contract.encoding import pack_job, unpack_result

        words = pack_job(job, self.beat_words)
        out = self.core.run_packet(words)
        self.words_in += int(words.size)
        self.words_out += int(np.asarray(out).size)
        return unpack_result(out, job, self.beat_words)
