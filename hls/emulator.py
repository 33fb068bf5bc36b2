"""Emulated accelerator: the HLS C++ kernels, built with g++ and called through ctypes.

* ``HlsCoreExecutor(limits)``: the ``core`` kernel alone, with the interface of
  ``deltamtl.contract.golden_core.GoldenCore`` (``run_packet``, ``run_job``, ``reset``).
* ``HlsSystemExecutor(limits)``: fetch -> core -> commit over a DDR byte buffer laid out
  by ``deltamtl.contract.ddr_image``: the accelerator the host pipeline uses without a board.
  B = 1 only: fetch and commit move one word per beat (``limits.beat_words > 1`` is refused).

Packets are flat uint64 word arrays in beats of ``limits.beat_words`` (docs/hls.md,
"Packet layout"), as GoldenCore takes and returns them.

The limits are compile-time in C++: one shared library is built (and cached under
build/hls/) per ``CoreLimits``. The core's resident state (weight bank, reuse buffer) lives
in the library's statics; each executor owns a copy that is swapped in when it runs, so
several executors with the same limits never see each other's state.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from dataclasses import dataclass

import numpy as np
from deltamtl.contract import ddr_image as descriptor
from deltamtl.contract.encoding import pack_job, unpack_result
from deltamtl.contract.jobs import JobResult, SiteJob
from deltamtl.contract.limits import LIMIT_FIELDS, CoreLimits
from deltamtl.contract.packets import TRAILER_FIELDS, CoreStatus
from deltamtl.contract.registers import KernelStatus
from deltamtl.hls.build import build

_TRL = {f.name: f for f in TRAILER_FIELDS}
_LOCK = threading.RLock()
_LIBS: dict[CoreLimits, _Library] = {}


class HlsKernelError(RuntimeError):
    """fetch or commit refused a job (descriptor error bits), or a kernel broke its contract."""

    def __init__(self, message: str, fetch_status: int = 0, commit_status: int = 0) -> None:
        super().__init__(message)
        self.fetch_status = fetch_status
        self.commit_status = commit_status


class _Library:
    """One loaded emulation library and the executor whose core state is loaded in it."""

    def __init__(self, limits: CoreLimits) -> None:
        self.limits = limits
        self.path = build("emu", limits)
        lib = ctypes.CDLL(str(self.path))
        u64p = ctypes.POINTER(ctypes.c_uint64)
        u8p = ctypes.POINTER(ctypes.c_uint8)
        u32p = ctypes.POINTER(ctypes.c_uint32)
        lib.dmtl_limits.argtypes = [ctypes.POINTER(ctypes.c_int)]
        lib.dmtl_max_packet_out.restype = ctypes.c_long
        lib.dmtl_core_state_io.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.dmtl_core_state_io.restype = ctypes.c_long
        lib.dmtl_core_run.argtypes = [u64p, ctypes.c_long, u64p, u8p, ctypes.c_long]
        lib.dmtl_core_run.restype = ctypes.c_int
        lib.dmtl_system_run.argtypes = [u8p, ctypes.c_uint64, ctypes.c_uint64, u32p, u32p, u64p]
        lib.dmtl_fetch_run.argtypes = [u8p, ctypes.c_uint64, ctypes.c_uint64, u32p, u64p, u8p,
                                       ctypes.c_long]
        lib.dmtl_fetch_run.restype = ctypes.c_int
        lib.dmtl_commit_run.argtypes = [u8p, ctypes.c_uint64, ctypes.c_uint64, u32p, u64p, u8p,
                                        ctypes.c_long]
        lib.dmtl_commit_run.restype = ctypes.c_int
        lib.dmtl_chain_check.argtypes = [u8p, ctypes.c_uint64, ctypes.c_uint64, u32p, u64p]
        lib.dmtl_chain_check.restype = ctypes.c_uint32
        lib.dmtl_chain_step.argtypes = [u8p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint32, u64p,
                                        u32p, u32p, u64p]
        lib.dmtl_chain_step.restype = ctypes.c_int
        lib.dmtl_core_act_iterations.restype = ctypes.c_long
        lib.dmtl_has_system.restype = ctypes.c_int
        self.lib = lib
        got = (ctypes.c_int * len(LIMIT_FIELDS))()
        lib.dmtl_limits(got)
        want = tuple(getattr(limits, name) for name in LIMIT_FIELDS)
        if tuple(got) != want:
            raise RuntimeError(f"{self.path}: compiled limits {tuple(got)} != requested {want}")
        self.max_out_words = int(lib.dmtl_max_packet_out())
        self.state_bytes = int(lib.dmtl_core_state_io(None, 0))
        self.owner: weakref.ref | None = None

    def activate(self, executor: _CoreOwner) -> None:
        """Make `executor`'s core state the one in the library's statics (caller holds _LOCK)."""
        current = self.owner() if self.owner is not None else None
        if current is executor:
            return
        if current is not None:
            current._state = ctypes.create_string_buffer(self.state_bytes)
            self.lib.dmtl_core_state_io(current._state, 0)
        if executor._state is None:
            self.lib.dmtl_core_reset()
        else:
            self.lib.dmtl_core_state_io(executor._state, 1)
            executor._state = None
        self.owner = weakref.ref(executor)


def _library(limits: CoreLimits) -> _Library:
    with _LOCK:
        if limits not in _LIBS:
            _LIBS[limits] = _Library(limits)
        return _LIBS[limits]


class _CoreOwner:
    def __init__(self, limits: CoreLimits) -> None:
        self.limits = limits
        self._lib = _library(limits)
        self._state: ctypes.Array | None = None  # saved state while another executor runs

    def reset(self) -> None:
        """Forget the resident weight bank and reuse buffer (GoldenCore.reset)."""
        with _LOCK:
            self._lib.activate(self)
            self._lib.lib.dmtl_core_reset()


class HlsCoreExecutor(_CoreOwner):
    """The C++ ``core`` kernel with GoldenCore's interface."""

    def run_packet(self, words: np.ndarray) -> np.ndarray:
        """One input packet (TLAST on its last beat) -> the core's output packet, both as
        words in beats of ``limits.beat_words``."""
        words = np.ascontiguousarray(words, dtype=np.uint64)
        b = self.limits.beat_words
        if words.size == 0:
            raise ValueError("run_packet: an AXI4-Stream packet has at least one word")
        if words.size % b:
            raise ValueError(f"run_packet: {words.size} words are not whole beats of {b}")
        out = np.zeros(self._lib.max_out_words, dtype=np.uint64)
        last = np.zeros(self._lib.max_out_words, dtype=np.uint8)
        u64p = ctypes.POINTER(ctypes.c_uint64)
        with _LOCK:
            self._lib.activate(self)
            n = self._lib.lib.dmtl_core_run(
                words.ctypes.data_as(u64p), words.size, out.ctypes.data_as(u64p),
                last.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), out.size)
        if n < 0:
            raise RuntimeError("core left beats of the input packet unread")
        if n == 0 or n > out.size:
            raise RuntimeError(f"core emitted {n} words (expected 1..{out.size})")
        if last[n - 1] != 1 or np.any(last[: n - 1]):
            raise RuntimeError("core output packet: TLAST not exactly on its last word")
        return out[:n].copy()

    def run_job(self, job: SiteJob) -> JobResult:
        b = self.limits.beat_words
        return unpack_result(self.run_packet(pack_job(job, b)), job, b)

    def act_iterations(self) -> int:
        """Trip count of the activation-sparse pass of the last accepted packet,
        G * sum_k max(|U_k|, T) + 2T (docs/hls.md, "Schedule"): C-simulation introspection."""
        with _LOCK:
            return int(self._lib.lib.dmtl_core_act_iterations())


@dataclass
class SystemRun:
    """What one fetch -> core -> commit run reports."""

    fetch_status: KernelStatus
    commit_status: KernelStatus
    trailer: int | None  # the core's trailer word, None when fetch streamed nothing

    @property
    def core_status(self) -> CoreStatus | None:
        if self.trailer is None:
            return None
        return CoreStatus(_TRL["status"].get([self.trailer]))


def _check_buf(buf: np.ndarray, buf_bytes: int) -> None:
    if not (isinstance(buf, np.ndarray) and buf.dtype == np.uint8 and buf.flags.c_contiguous
            and buf.flags.writeable):
        raise TypeError("buf must be a writeable C-contiguous uint8 numpy array")
    # The kernels access whole words, but only words that lie inside [0, buf_bytes).
    if not 0 <= int(buf_bytes) <= buf.size:
        raise ValueError(f"buf_bytes={buf_bytes} outside the {buf.size}-byte buffer")


class HlsSystemExecutor(_CoreOwner):
    """fetch -> core -> commit over a DDR byte buffer (the emulated accelerator). B = 1
    only: fetch and commit stream one word per beat, and the DDR image (contract/ddr_image)
    refuses B > 1 as well."""

    def __init__(self, limits: CoreLimits) -> None:
        if limits.beat_words != 1:
            raise ValueError(f"HlsSystemExecutor: beat_words={limits.beat_words}; the system path "
                             f"(fetch -> core -> commit) is B = 1 only (docs/hls.md)")
        super().__init__(limits)
        if not self._lib.lib.dmtl_has_system():
            raise RuntimeError(f"{self._lib.path}: built without the system path")

    def run_buffer(self, buf: np.ndarray, buf_bytes: int, desc_offset: int) -> SystemRun:
        """Run the three kernels on ``buf`` in place (the gmem the host would hand over)."""
        _check_buf(buf, buf_bytes)
        fst, cst = ctypes.c_uint32(0), ctypes.c_uint32(0)
        trailer = (ctypes.c_uint64 * 2)()
        with _LOCK:
            self._lib.activate(self)
            self._lib.lib.dmtl_system_run(
                buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), int(buf_bytes),
                int(desc_offset), ctypes.byref(fst), ctypes.byref(cst), trailer)
        return SystemRun(KernelStatus(fst.value), KernelStatus(cst.value),
                         int(trailer[0]) if trailer[1] else None)

    def fetch_only(self, buf: np.ndarray, buf_bytes: int, desc_offset: int
                   ) -> tuple[KernelStatus, np.ndarray, np.ndarray]:
        """fetch alone: (status, streamed words, their TLAST flags). Touches no core state."""
        _check_buf(buf, buf_bytes)
        cap = max(1, int(buf_bytes) // 2 + 64)  # a packet never holds more words than that
        out = np.zeros(cap, dtype=np.uint64)
        last = np.zeros(cap, dtype=np.uint8)
        st = ctypes.c_uint32(0)
        n = self._lib.lib.dmtl_fetch_run(
            buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), int(buf_bytes), int(desc_offset),
            ctypes.byref(st), out.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)),
            last.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), cap)
        if n > cap:
            raise RuntimeError(f"fetch streamed {n} words, more than the {cap} a buffer allows")
        return KernelStatus(st.value), out[:n].copy(), last[:n].copy()

    def commit_only(self, buf: np.ndarray, buf_bytes: int, desc_offset: int, words: np.ndarray,
                    lasts: np.ndarray) -> tuple[KernelStatus, int]:
        """commit alone fed ``words`` with the given TLAST flags: (status, words left unread)."""
        _check_buf(buf, buf_bytes)
        words = np.ascontiguousarray(words, dtype=np.uint64)
        lasts = np.ascontiguousarray(lasts, dtype=np.uint8)
        if words.shape != lasts.shape:
            raise ValueError(f"commit_only: {words.size} words but {lasts.size} TLAST flags")
        st = ctypes.c_uint32(0)
        left = self._lib.lib.dmtl_commit_run(
            buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), int(buf_bytes), int(desc_offset),
            ctypes.byref(st), words.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)),
            lasts.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), words.size)
        return KernelStatus(st.value), int(left)

    def chain_check(self, buf: np.ndarray, buf_bytes: int, chain_offset: int) -> tuple[int, int, int]:
        """The kernels' chain validation (contract/chain.py): (0 or the KernelStatus bit,
        n_jobs, first link offset). Reads only; touches no core state."""
        _check_buf(buf, buf_bytes)
        n, first = ctypes.c_uint32(0), ctypes.c_uint64(0)
        err = self._lib.lib.dmtl_chain_check(
            buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), int(buf_bytes), int(chain_offset),
            ctypes.byref(n), ctypes.byref(first))
        return int(err), int(n.value), int(first.value)

    def chain_step(self, buf: np.ndarray, buf_bytes: int, chain_offset: int, k: int,
                   link: int) -> tuple[SystemRun, int] | None:
        """Job ``k`` of a validated chain, its link at ``link``: None while its doorbell is
        not rung; else (what the run reported, the next link). commit writes the job's
        status entry."""
        _check_buf(buf, buf_bytes)
        pos = ctypes.c_uint64(int(link))
        fst, cst = ctypes.c_uint32(0), ctypes.c_uint32(0)
        trailer = (ctypes.c_uint64 * 2)()
        with _LOCK:
            self._lib.activate(self)
            rc = self._lib.lib.dmtl_chain_step(
                buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)), int(buf_bytes),
                int(chain_offset), int(k), ctypes.byref(pos), ctypes.byref(fst), ctypes.byref(cst),
                trailer)
        if rc < 0:
            raise HlsKernelError(f"chain_step: job {k} of a chain that does not validate")
        if rc == 1:
            return None
        run = SystemRun(KernelStatus(fst.value), KernelStatus(cst.value),
                        int(trailer[0]) if trailer[1] else None)
        return run, int(pos.value)

    def run_job(self, job: SiteJob) -> JobResult:
        """Lay ``job`` out in a fresh buffer, run it, read the results back (GoldenCore.run_job).

        A core refusal is returned as the JobResult's status (as the golden does); a
        descriptor refusal by fetch/commit raises HlsKernelError."""
        buf, layout = descriptor.layout_job(job)
        run = self.run_buffer(buf, layout.buf_bytes, layout.desc_offset)
        errors = ~(KernelStatus.DONE | KernelStatus.CORE)
        if (run.fetch_status & errors) or (run.commit_status & errors) or run.trailer is None:
            raise HlsKernelError(
                f"job tag {job.tag}: fetch status {run.fetch_status!r}, commit status "
                f"{run.commit_status!r}", int(run.fetch_status), int(run.commit_status))
        trl = [run.trailer]
        result = JobResult(status=CoreStatus(_TRL["status"].get(trl)), tag=_TRL["tag"].get(trl),
                           nnz_act=_TRL["nnz_act"].get(trl))
        result.extra = {"fetch_status": run.fetch_status, "commit_status": run.commit_status}
        if result.status == CoreStatus.OK:
            outs = descriptor.read_outputs(buf, layout)
            result.y = outs["y"]
            result.x_ref = outs.get("x_ref")
            result.y_ref = outs.get("y_ref")
        return result


__all__ = ["HlsCoreExecutor", "HlsSystemExecutor", "HlsKernelError", "SystemRun"]
