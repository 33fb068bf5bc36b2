"""The ``pynq`` backend: the ZCU104 accelerator through PYNQ 4 (docs/host.md).

Objects:

* :class:`FetchIP`, :class:`CommitIP`: ``pynq.DefaultIP`` subclasses that PYNQ binds by
  the VLNVs of contract/platform.py when an overlay loads; they know the ap_ctrl_hs
  block and the kernels' argument registers (contract/registers.py).
* :class:`PynqExecutor`: a :class:`~deltamtl.host.runner.SiteExecutor` with the runner's
  chained-launch hooks. Once per video it allocates one cacheable ``pynq.allocate``
  buffer (the *arena*) for the jobs of both frame plans (keyframe and not), each job's
  descriptor and regions at a fixed place with guard bytes around, plus one chain area.
  Per frame it writes the frame's chain, zeroes the doorbell and status array, flushes,
  and starts fetch and commit once; per job it writes the job's inputs, flushes them,
  rings the doorbell, polls the job's status entry (invalidate, read) with a time-out and
  invalidates and reads the outputs. At the end of the frame it reads ap_done and the
  status register of both kernels.

Faults: a time-out pulses the recovery line (the AXI GPIO of contract/platform.py) and
raises :class:`KernelTimeout`; a bad status entry raises :class:`JobStatusError` naming the
job (task, layer, site) and its bits. Both are :class:`AcceleratorFault`, which the runner
answers with a reset and a forced keyframe.

The same code drives the board (``pynq.Overlay(bitfile)``) and the virtual ZCU104 of
host/virtual_zcu104.py (``Overlay(..., download=False, device=VirtualZcu104(...))``).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
from deltamtl.contract import platform as pf
from deltamtl.contract.chain import (
    CHAIN_STATUS_BYTES,
    ChainLayout,
    chain_bytes,
    pack_status_tag,
    plan_chain,
    validate_chain,
    write_chain,
)
from deltamtl.contract.ddr_image import (
    JobLayout,
    align,
    pack_descriptor,
    plan_layout,
    read_outputs,
    validate_descriptor,
    write_job,
)
from deltamtl.contract.descriptor import OUTPUT_REGIONS, Region
from deltamtl.contract.encoding import pack_header
from deltamtl.contract.formats import JobFlag, Mode
from deltamtl.contract.jobs import JobResult, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import HEADER_FIELDS, HEADER_WORDS, CoreStatus
from deltamtl.contract.registers import (
    AXI_LITE_BITS,
    AXI_LITE_BYTES,
    CTRL_DONE,
    CTRL_START,
    REG_CTRL,
    KernelStatus,
    register,
)
from deltamtl.host.runner import AcceleratorFault, PlannedJob

with warnings.catch_warnings():  # pynq warns that x86 is not a supported architecture
    warnings.simplefilter("ignore")
    import pynq
    from pynq import DefaultIP

_KNOWN_STATUS_BITS = sum(int(bit) for bit in KernelStatus)  # any other bit: not commit's word
GUARD_BYTES = 64  # between every two structures of the arena: a stray write shows there
GUARD_FILL = 0xA5
_PLATFORM = pf.zcu104()


class KernelTimeout(AcceleratorFault):
    """A job's status entry (or a kernel's ap_done) did not arrive in time."""


class JobStatusError(AcceleratorFault):
    """A job's status entry reports an error, or is not the word commit writes."""


class _KernelIP(DefaultIP):
    """ap_ctrl_hs control of fetch/commit through single MMIO accesses (each one counts on
    the board: tens of microseconds from Python, docs/host.md). Every access is counted
    (``accesses``), so the per-frame register traffic is measured on the board as on the
    virtual device."""

    accesses = 0

    def read(self, offset: int = 0) -> int:
        self.accesses += 1
        return super().read(offset)

    def write(self, offset: int, value: int) -> None:
        self.accesses += 1
        super().write(offset, value)

    def set_args(self, gmem: int, buf_bytes: int, desc_offset: int) -> None:
        for name, value in (("gmem", gmem), ("buf_bytes", buf_bytes), ("desc_offset", desc_offset)):
            reg = register(name)
            for w in range(reg.bits // AXI_LITE_BITS):  # low word first
                self.write(reg.offset + AXI_LITE_BYTES * w,
                           (value >> (AXI_LITE_BITS * w)) & ((1 << AXI_LITE_BITS) - 1))

    def start(self) -> None:
        # a plain write, not register_map's read-modify-write: the read would clear ap_done
        self.write(REG_CTRL, CTRL_START)

    def done(self) -> bool:
        return bool(self.read(REG_CTRL) & CTRL_DONE)

    def status(self) -> KernelStatus:
        return KernelStatus(self.read(register("status").offset))


class FetchIP(_KernelIP):
    bindto = [str(_PLATFORM.kernel("fetch").vlnv)]


class CommitIP(_KernelIP):
    bindto = [str(_PLATFORM.kernel("commit").vlnv)]


def _header_words(pj: PlannedJob, th: int = 1, tag: int = 0) -> tuple[int, int]:
    values = {"mode": int(pj.mode), "flags": int(pj.flags), "th": th, "tokens": pj.tokens,
              "in_dim": pj.in_dim, "out_dim": pj.out_dim, "nnz_dw": pj.nnz_dw, "tag": tag}
    words = [0] * HEADER_WORDS
    for f in HEADER_FIELDS:
        f.put(words, values[f.name])
    return int(words[0]), int(words[1])


@dataclass
class _Slot:
    job: PlannedJob
    layout: JobLayout
    inputs_end: int  # descriptor + input regions: [layout.desc_offset, inputs_end)
    end: int  # + output regions


@dataclass
class _Program:
    """One frame plan laid out in the arena."""

    slots: list[_Slot]


class PynqExecutor:
    """The accelerator behind the runner's executor interface, one chained launch a frame."""

    def __init__(self, overlay: pynq.Overlay, limits: CoreLimits, timeout_s: float = 2.0,
                 platform: pf.Platform | None = None) -> None:
        p = platform or _PLATFORM
        self.limits = limits
        self.timeout_s = float(timeout_s)
        self.fetch = getattr(overlay, p.kernel("fetch").instance)
        self.commit = getattr(overlay, p.kernel("commit").instance)
        for ip, cls in ((self.fetch, FetchIP), (self.commit, CommitIP)):
            if not isinstance(ip, cls):
                raise TypeError(f"{type(ip).__name__} is not bound to {cls.bindto[0]}: "
                                "import deltamtl.host.pynq_driver before loading the overlay")
        self.gpio = getattr(overlay, p.reset.gpio_instance)
        self.reset_line = p.reset
        self.device = overlay.device
        self.arena: pynq.buffer.PynqBuffer | None = None
        self.programs: dict[bool, _Program] = {}
        self.chain_at = 0
        self.chain: ChainLayout | None = None
        self._current: bool | None = None  # which program the chain area holds
        self._args_written = False
        self._started = False  # kernels started since the last pulse of the recovery line
        self._frame: _Program | None = None
        self._k = 0
        self.guards: list[tuple[int, int]] = []  # (offset, size) of every guard band

    @property
    def register_accesses(self) -> int:
        """AXI4-Lite accesses of fetch and commit so far (the recovery GPIO's pulses are
        counted by the device model, not here)."""
        return self.fetch.accesses + self.commit.accesses

    # -- buffer plan ------------------------------------------------------------------------
    def prepare_video(self, plans: dict[bool, list[PlannedJob]]) -> None:
        """Lay out both frame plans and allocate the arena (once per video)."""
        pos = GUARD_BYTES
        guards = [(0, GUARD_BYTES)]
        programs: dict[bool, _Program] = {}
        for key, plan in plans.items():
            if not plan:
                raise ValueError("a frame plan without jobs")
            slots = []
            for pj in plan:
                layout = plan_layout(_header_words(pj), pos)
                outs = [layout.offsets[r] for r in OUTPUT_REGIONS if r in layout.offsets]
                slots.append(_Slot(pj, layout, min(outs), layout.buf_bytes))
                guards.append((layout.buf_bytes, GUARD_BYTES))
                pos = layout.buf_bytes + GUARD_BYTES
            programs[key] = _Program(slots)
        n_max = max(len(p.slots) for p in programs.values())
        self.chain_at = pos
        pos = align(pos + chain_bytes(n_max))
        guards.append((pos, GUARD_BYTES))
        total = pos + GUARD_BYTES
        if self.arena is None or self.arena.size < total:
            self.arena = pynq.allocate((total,), dtype=np.uint8, cacheable=True, target=self.device)
        self.check_buffer(self.arena, total)
        self.programs, self.guards, self._current = programs, guards, None
        self._args_written = False  # the chain (desc_offset) and maybe the arena moved
        arena = self.arena
        arena[:] = 0
        for at, size in guards:
            arena[at: at + size] = GUARD_FILL
        for prog in programs.values():
            for slot in prog.slots:
                write_job_descriptor(arena, slot.layout, _header_words(slot.job))
                if slot.job.nnz_dw:  # a well-formed placeholder CSR until the job's own
                    at = slot.layout.offsets[Region.DW_INDPTR]
                    arena[at + 4 * slot.job.out_dim: at + 4 * slot.job.out_dim + 4] = np.frombuffer(
                        int(slot.job.nnz_dw).to_bytes(4, "little"), np.uint8)
            self.validate(prog)  # every descriptor, before any start register is written
        arena.flush()

    @staticmethod
    def check_buffer(buf: object, need: int) -> None:
        """The arena must be a 1-D uint8 PynqBuffer of at least ``need`` bytes."""
        if not isinstance(buf, pynq.buffer.PynqBuffer):
            raise TypeError(f"arena: a pynq.allocate buffer is needed, got {type(buf).__name__}")
        if buf.dtype != np.uint8 or buf.ndim != 1:
            raise TypeError(f"arena: dtype {buf.dtype} shape {buf.shape}; needs 1-D uint8")
        if buf.size < need:
            raise ValueError(f"arena: {buf.size} bytes, the buffer plan needs {need}")

    @property
    def buf_bytes(self) -> int:
        return int(self.arena.size)

    # -- a frame ------------------------------------------------------------------------------
    def begin_frame(self, keyframe: bool) -> None:
        """Write and validate the frame's chain, then start fetch and commit once."""
        if self.arena is None:
            raise RuntimeError("prepare_video() first (GoldenRunner.reset does it)")
        if self._frame is not None:
            self.recover()  # the previous frame never ended (an exception): start clean
        prog = self.programs[bool(keyframe)]
        arena = self.arena
        if self._current != bool(keyframe):  # the chain area holds the other plan's chain
            self.chain = plan_chain(self.chain_at, [s.layout.desc_offset for s in prog.slots])
            write_chain(arena, self.chain)
            self._current = None  # written, flushed below once it passes the checks
        chain = self.chain
        # the host's own check of the chain and of every descriptor it links, before any
        # flush or start register (the kernels check again; docs/host.md)
        err, _links = validate_chain(arena, self.buf_bytes, chain.header)
        if err:
            raise ValueError(f"chain refused by the host: {KernelStatus(err)!r}")
        self.validate(prog)
        if self._current is None:
            arena[chain.header: chain.doorbell].flush()
            self._current = bool(keyframe)
        end = chain.status + CHAIN_STATUS_BYTES * chain.n_jobs
        arena[chain.doorbell: end] = 0  # doorbell and status array are adjacent
        arena[chain.doorbell: end].flush()
        if not self._args_written:  # the registers keep their values until a reset
            for ip in (self.fetch, self.commit):
                ip.set_args(arena.device_address, self.buf_bytes, chain.header)
            self._args_written = True
        self.commit.start()
        self.fetch.start()
        self._started = True
        self._frame, self._k = prog, 0

    def validate(self, prog: _Program) -> None:
        """Every descriptor against the arena, as the kernels will check it (ddr_image)."""
        for k, slot in enumerate(prog.slots):
            self._validate_slot(k, slot)

    def _validate_slot(self, k: int, slot: _Slot) -> None:
        # within the slot's end, not only the arena's: a job must stay in its own slot
        raw = np.asarray(self.arena)[: slot.end]
        err = validate_descriptor(raw, slot.end, slot.layout.desc_offset, self.limits)
        if err:
            pj = slot.job
            raise ValueError(f"job {k} ({pj.task}, layer {pj.layer}, {pj.site}): descriptor "
                             f"refused by the host: {KernelStatus(err)!r}")

    def run_job(self, job: SiteJob) -> JobResult:
        if self._frame is None:
            raise RuntimeError("run_job outside a frame: begin_frame() first")
        k = self._k
        if k >= len(self._frame.slots):
            raise RuntimeError(f"job {k}: the frame's chain has only {len(self._frame.slots)}")
        slot = self._frame.slots[k]
        self._check_job(job, slot.job, k)
        arena = self.arena
        # the slot's fixed region offsets with this job's header (its th and tag)
        layout = replace(slot.layout, header_words=tuple(int(w) for w in pack_header(job)))
        write_job(arena, layout, job)
        try:
            self._validate_slot(k, slot)  # the job's own CSR, before the doorbell lets fetch read it
        except ValueError:
            self.recover()
            raise
        arena[slot.layout.desc_offset: slot.inputs_end].flush()
        arena[self.chain.doorbell: self.chain.doorbell + 8] = np.frombuffer(
            int(k + 1).to_bytes(8, "little"), np.uint8)
        arena[self.chain.doorbell: self.chain.doorbell + 8].flush()
        entry = self._poll_status(k, slot.job)
        status, tagword = int(entry[0]), int(entry[1])
        self._k += 1
        pj = slot.job
        where = f"job {k} ({pj.task}, layer {pj.layer}, {pj.site}, {Mode(pj.mode).name})"
        if tagword != pack_status_tag(job.tag, k) or status & ~_KNOWN_STATUS_BITS:
            raise JobStatusError(f"{where}: corrupted status word {status:#010x} {tagword:#010x} "
                                 f"(expected tag {job.tag:#06x}, index {k})")
        if status != int(KernelStatus.DONE):
            raise JobStatusError(f"{where}: status {KernelStatus(status)!r} ({status:#x})")
        arena[slot.inputs_end: slot.end].invalidate()
        outs = read_outputs(np.asarray(arena), slot.layout)
        # the status entry carries the trailer's nnz_act: the MACs the runner counts
        return JobResult(status=CoreStatus.OK, tag=job.tag, nnz_act=int(entry[2]), y=outs["y"],
                         x_ref=outs.get("x_ref"), y_ref=outs.get("y_ref"))

    def _poll_status(self, k: int, pj: PlannedJob) -> np.ndarray:
        at = self.chain.status + CHAIN_STATUS_BYTES * k
        entry = self.arena[at: at + CHAIN_STATUS_BYTES]
        deadline = time.monotonic() + self.timeout_s
        while True:
            entry.invalidate()
            words = np.asarray(entry).view("<u4")
            if words[0] & int(KernelStatus.DONE):
                return words.copy()
            if time.monotonic() > deadline:
                self.recover()
                raise KernelTimeout(f"job {k} ({pj.task}, layer {pj.layer}, {pj.site}): no status "
                                    f"after {self.timeout_s} s; kernels reset")
            time.sleep(0)  # let the board's kernels (or another thread) run

    def end_frame(self) -> None:
        """Both kernels must report ap_done and a clean status once the chain ran out."""
        if self._frame is None:
            return
        if self._k != len(self._frame.slots):
            raise RuntimeError(f"frame ended after {self._k} of {len(self._frame.slots)} jobs")
        deadline = time.monotonic() + self.timeout_s
        for ip in (self.fetch, self.commit):
            while not ip.done():
                if time.monotonic() > deadline:
                    self.recover()
                    raise KernelTimeout(f"{type(ip).__name__}: no ap_done after the chain's last job")
            status = ip.status()
            if status != KernelStatus.DONE:
                raise JobStatusError(f"{type(ip).__name__}: chain status {status!r}")
        self._frame = None

    def _check_job(self, job: SiteJob, pj: PlannedJob, k: int) -> None:
        """The job must be the one the chain holds a slot for, in contract dtypes."""
        got = (Mode(job.mode), JobFlag(job.flags), job.tokens, job.in_dim, job.out_dim, job.nnz_dw)
        want = (Mode(pj.mode), JobFlag(pj.flags), pj.tokens, pj.in_dim, pj.out_dim, pj.nnz_dw)
        if got != want:
            self.recover()
            raise ValueError(f"job {k} ({pj.task}, layer {pj.layer}, {pj.site}): {got} but the "
                             f"chain's slot is {want}")
        if np.asarray(job.x).dtype != np.int8:
            self.recover()
            raise TypeError(f"job {k} ({pj.task}, layer {pj.layer}, {pj.site}): x is "
                            f"{np.asarray(job.x).dtype}, the contract says int8")

    # -- reset ----------------------------------------------------------------------------------
    def recover(self, force: bool = False) -> None:
        """Pulse the recovery line: fetch, core and commit (and their register files) reset.
        Skipped when nothing was started since the last pulse (the runner calls it again
        after a fault the driver already answered), unless ``force``."""
        if not (self._started or force):
            self._frame = None
            return
        self._started = False
        bit = 1 << self.reset_line.bit
        on, off = (bit, 0) if self.reset_line.active_high else (0, bit)
        self.gpio.write(self.reset_line.data_offset, on)
        self.gpio.write(self.reset_line.data_offset, off)
        self._args_written = False
        self._frame = None

    def reset(self) -> None:
        """GoldenRunner.reset: forget the core's state (a keyframe follows, which loads
        every weight and reference it needs; the pulse also clears a half-run chain)."""
        self.recover()


def write_job_descriptor(buf: np.ndarray, layout: JobLayout, header_words: tuple[int, int]) -> None:
    raw = np.frombuffer(pack_descriptor(header_words, layout.offsets), np.uint8)
    buf[layout.desc_offset: layout.desc_offset + raw.size] = raw


__all__ = ["CommitIP", "FetchIP", "JobStatusError", "KernelTimeout", "PynqExecutor"]
