"""A virtual ZCU104 on PYNQ's own extension point: a ``pynq.Device`` whose register file
and non-coherent DDR drive the real C++ kernels (hls/emulator.py), so the ``pynq``
backend's code runs unchanged in CI on x86 (docs/host.md, "The virtual ZCU104").

* Registers (capability ``REGISTER_RW``): every MMIO access of ``pynq.Overlay``'s IP
  drivers lands in :meth:`read_registers` / :meth:`write_registers`, which model the
  ap_ctrl_hs block of fetch and commit (ap_start, ap_done clear-on-read, ap_idle), their
  argument registers, and the recovery-reset AXI GPIO of contract/platform.py. Accesses are
  counted.
* DDR: each ``pynq.allocate`` buffer has a host view (what the CPU's cache holds, the
  PynqBuffer's memory) and a device view (what the PL's HP ports read and write).
  ``flush`` copies host -> device, ``invalidate`` device -> host; nothing else moves data,
  so a missing flush or invalidate shows up as wrong bits. Bytes moved are counted.
* Kernels: a start of fetch and commit on a chain (contract/chain.py) validates the chain
  with the kernels' own check; the jobs then run one at a time through the C++ library
  (``dmtl_chain_step``: fetch -> core -> commit on the device view) whenever the host
  touches the device (a flush, an invalidate, a register access) and the job's doorbell
  has been rung. Stepping instead of a kernel thread keeps the interleaving of host
  writes and kernel work deterministic.
* Faults to inject: ``hang_after`` (the chain stops after that many jobs and ap_done never
  rises, until the recovery line is pulsed) and ``corrupt_status`` (job index whose
  status-array entry is overwritten with a wrong word after commit wrote it).
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from deltamtl.contract import platform as pf
from deltamtl.contract.chain import CHAIN_STATUS_BYTES, CHAIN_WORD_STATUS, is_chain
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.registers import (
    AXI_LITE_BITS,
    CTRL_DONE,
    CTRL_IDLE,
    CTRL_START,
    REG_CTRL,
    REG_STATUS_CTRL,
    KernelStatus,
    register,
)
from deltamtl.hls.emulator import HlsSystemExecutor

with warnings.catch_warnings():  # pynq warns that x86 is not a supported architecture
    warnings.simplefilter("ignore")
    import pynq
    from pynq.buffer import PynqBuffer
    from pynq.metadata.runtime_metadata_parser import RuntimeMetadataParser
    from pynq.pl_server.device import Device
    from pynqmetadata.frontends import Metadata

# PYNQ's buffers live in DDR_LOW; start above 0 so that a zero address is never valid.
DDR_BASE = 0x1000_0000
CACHE_LINE = 64  # Cortex-A53 data cache line


@dataclass
class _Bo:
    """One allocation: the CPU's (cached) view and the PL's view of the same bytes."""

    address: int
    host: np.ndarray  # uint8, the PynqBuffer's memory
    device: np.ndarray  # uint8


@dataclass
class _Kernel:
    """The s_axilite register file of fetch or commit."""

    name: str
    base: int
    regs: dict[int, int] = field(default_factory=dict)  # offset -> 32-bit value
    busy: bool = False
    done: bool = False  # ap_done, cleared when CTRL is read

    def arg(self, name: str) -> int:
        reg = register(name)
        lo = self.regs.get(reg.offset, 0)
        return lo | (self.regs.get(reg.offset + 4, 0) << 32) if reg.bits == 64 else lo


@dataclass
class _Run:
    """A chain the kernels are working through."""

    bo: _Bo
    buf_bytes: int
    chain_offset: int
    n_jobs: int
    link: int
    next_job: int = 0


@dataclass
class Counters:
    reg_reads: int = 0
    reg_writes: int = 0
    flushed: int = 0  # bytes host -> device
    invalidated: int = 0  # bytes device -> host
    resets: int = 0
    jobs: int = 0

    @property
    def reg_accesses(self) -> int:
        return self.reg_reads + self.reg_writes


class VirtualZcu104(Device):
    """``pynq.Device`` subclass: the ZCU104 design of contract/platform.py, virtually."""

    def __init__(self, limits: CoreLimits, platform: pf.Platform | None = None) -> None:
        super().__init__("virtual-zcu104")
        self.capabilities = {"REGISTER_RW": True}
        self.platform = platform or pf.zcu104()
        self.kernels = {k.name: _Kernel(k.name, k.control_base) for k in self.platform.kernels
                        if k.control_base is not None}
        self.emu = HlsSystemExecutor(limits)  # the real C++ kernels and the core's state
        self._bos: dict[int, _Bo] = {}
        self._next_address = DDR_BASE
        self._run: _Run | None = None
        self.gpio_data = 0
        self.counters = Counters()
        self.hang_after: int | None = None
        self.corrupt_status: int | None = None
        self.corrupt_mask = 0x8000_0040  # XORed into the status word (an unknown bit and CORE)

    # -- pynq.Device: metadata ------------------------------------------------------------
    def get_bitfile_metadata(self, bitfile_name: str) -> RuntimeMetadataParser:
        """The .hwh beside the .bit (contract.platform_files.write_hwh writes it)."""
        return RuntimeMetadataParser(Metadata(input=str(Path(bitfile_name).with_suffix(".hwh"))))

    # -- pynq.Device: memory --------------------------------------------------------------
    def allocate(self, shape, dtype, cacheable: bool = True, **_kwargs) -> PynqBuffer:
        if not cacheable:
            # the driver's buffer plan is cacheable memory with explicit flush/invalidate
            raise ValueError("the virtual ZCU104 models cacheable buffers only (cacheable=True)")
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        host = np.zeros(max(nbytes, 1), dtype=np.uint8)
        bo = len(self._bos) + 1
        self._bos[bo] = _Bo(self._next_address, host, np.zeros_like(host))
        self._next_address += -(-max(nbytes, 1) // 4096) * 4096
        return PynqBuffer(shape, dtype, buffer=host.data, device=self,
                          device_address=self._bos[bo].address, bo=bo, coherent=False)

    # Cache maintenance works on whole lines (ARM: by virtual address, 64-byte lines), so a
    # flush also writes back the host's stale copy of bytes that share a line with the
    # range, and an invalidate also drops the host's unflushed writes there. Modelling
    # that, rather than byte ranges, makes a buffer plan that mixes host- and kernel-written
    # bytes in one line fail here as it would on the board.
    def _lines(self, b: _Bo, offset: int, size: int) -> slice:
        lo = offset // CACHE_LINE * CACHE_LINE
        hi = min(b.host.size, -(-(offset + size) // CACHE_LINE) * CACHE_LINE)
        return slice(lo, hi)

    def flush(self, bo: int, offset: int, ptr: int, size: int) -> None:
        b = self._bos[bo]
        lines = self._lines(b, offset, size)
        b.device[lines] = b.host[lines]
        self.counters.flushed += lines.stop - lines.start
        self._advance()

    def invalidate(self, bo: int, offset: int, ptr: int, size: int) -> None:
        self._advance()
        b = self._bos[bo]
        lines = self._lines(b, offset, size)
        b.host[lines] = b.device[lines]
        self.counters.invalidated += lines.stop - lines.start

    def freebuffer(self, bo: int, *_args) -> None:  # the stock one calls munmap
        self._bos.pop(bo, None)

    def device_view(self, address: int) -> np.ndarray:
        """The PL's view of the allocation at ``address`` (tests read guard bytes here)."""
        return self._bo_at(address).device

    def _bo_at(self, address: int) -> _Bo:
        for b in self._bos.values():
            if b.address == address:
                return b
        raise ValueError(f"no buffer allocated at {address:#x}")

    # -- pynq.Device: registers -----------------------------------------------------------
    def read_registers(self, address: int, length: int) -> bytes:
        self.counters.reg_reads += 1
        self._advance()
        out = b""
        for at in range(address, address + length, 4):
            out += struct.pack("<I", self._read32(at))
        return out[:length]

    def write_registers(self, address: int, data: bytes) -> None:
        self.counters.reg_writes += 1
        data = bytes(data) + bytes(-len(data) % 4)
        for k in range(0, len(data), 4):
            self._write32(address + k, struct.unpack_from("<I", data, k)[0])

    def _kernel_at(self, address: int) -> tuple[_Kernel | None, int]:
        for k in self.kernels.values():
            if k.base <= address < k.base + pf.CONTROL_RANGE:
                return k, address - k.base
        return None, 0

    def _read32(self, address: int) -> int:
        reset = self.platform.reset
        if address == reset.base + reset.data_offset:
            return self.gpio_data
        if address == reset.base + reset.tri_offset:
            return 0  # all outputs
        k, off = self._kernel_at(address)
        if k is None:
            raise ValueError(f"register read at {address:#x}: no IP there")
        if off == REG_CTRL:
            value = (CTRL_DONE if k.done else 0) | (0 if k.busy else CTRL_IDLE)
            k.done = False  # ap_done is clear-on-read (ap_ctrl_hs)
            return value
        if off == REG_STATUS_CTRL:
            return 1  # the status word is valid once written
        return k.regs.get(off, 0)

    def _write32(self, address: int, value: int) -> None:
        reset = self.platform.reset
        if address == reset.base + reset.data_offset:
            line = bool(value >> reset.bit & 1) == reset.active_high
            if line:
                self._reset_kernels()
            self.gpio_data = value
            return
        k, off = self._kernel_at(address)
        if k is None:
            raise ValueError(f"register write at {address:#x}: no IP there")
        if off == REG_CTRL:
            if value & CTRL_START and not k.busy:
                k.busy, k.done = True, False
                self._maybe_launch()
            return
        k.regs[off] = value & ((1 << AXI_LITE_BITS) - 1)

    # -- the kernels ------------------------------------------------------------------------
    def _reset_kernels(self) -> None:
        """The recovery line: kernels (and their register files) and the core's state reset;
        DDR keeps its contents. An injected hang is cleared: the fault was the kernel's."""
        for k in self.kernels.values():
            k.regs.clear()
            k.busy = k.done = False
        self._run = None
        self.emu.reset()
        self.hang_after = None
        self.counters.resets += 1

    def _finish(self, status_fetch: int, status_commit: int) -> None:
        for k, st in ((self.kernels["fetch"], status_fetch), (self.kernels["commit"], status_commit)):
            k.regs[register("status").offset] = st
            k.busy, k.done = False, True
        self._run = None

    def _maybe_launch(self) -> None:
        """fetch and commit both started: run what their registers point at."""
        f, c = self.kernels["fetch"], self.kernels["commit"]
        if not (f.busy and c.busy) or self._run is not None:
            return
        args = {n: (f.arg(n), c.arg(n)) for n in ("gmem", "buf_bytes", "desc_offset")}
        if any(a != b for a, b in args.values()):
            raise ValueError(f"fetch and commit started on different jobs: {args}")
        bo = self._bo_at(args["gmem"][0])
        buf_bytes, offset = args["buf_bytes"][0], args["desc_offset"][0]
        if buf_bytes > bo.device.size:  # the PL would run past the allocation
            raise ValueError(f"buf_bytes {buf_bytes} beyond the {bo.device.size}-byte buffer")
        if not is_chain(bo.device, buf_bytes, offset):
            run = self.emu.run_buffer(bo.device, buf_bytes, offset)  # one job, as before
            self._finish(int(run.fetch_status), int(run.commit_status))
            return
        err, n, first = self.emu.chain_check(bo.device, buf_bytes, offset)
        if err:
            done = int(KernelStatus.DONE) | err
            self._finish(done, done)
            return
        self._run = _Run(bo, buf_bytes, offset, n, first)
        self._advance()

    def _advance(self) -> None:
        """Run every job of the chain whose doorbell is rung (what the PL did meanwhile)."""
        run = self._run
        while run is not None and run.next_job < run.n_jobs:
            if self.hang_after is not None and run.next_job >= self.hang_after:
                return  # hung: no more progress, ap_done never rises
            step = self.emu.chain_step(run.bo.device, run.buf_bytes, run.chain_offset,
                                       run.next_job, run.link)
            if step is None:
                return  # waiting for the host's doorbell
            _sysrun, run.link = step
            if self.corrupt_status == run.next_job:
                at = self._status_entry(run, run.next_job)
                word = run.bo.device[at: at + 4].view("<u4")
                word ^= np.uint32(self.corrupt_mask)
                self.corrupt_status = None
            run.next_job += 1
            self.counters.jobs += 1
        if run is not None and run.next_job >= run.n_jobs:
            done = int(KernelStatus.DONE)
            self._finish(done, done)

    @staticmethod
    def _status_entry(run: _Run, k: int) -> int:
        at = run.chain_offset + 4 * CHAIN_WORD_STATUS
        raw = run.bo.device[at: at + 8].tobytes()
        return struct.unpack("<Q", raw)[0] + CHAIN_STATUS_BYTES * k


def load_overlay(folder: Path | str, limits: CoreLimits, impl: str = "hls",
                 platform: pf.Platform | None = None) -> tuple[pynq.Overlay, VirtualZcu104]:
    """Write the virtual .hwh (and the empty .bit PYNQ checks for) into ``folder`` and load
    it with ``pynq.Overlay(download=False, device=...)``: PYNQ binds the driver classes by
    VLNV exactly as on the board."""
    from deltamtl.contract.platform_files import write_hwh

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = platform or pf.zcu104()
    name = f"deltamtl_{impl}"
    write_hwh(folder / f"{name}.hwh", p, impl)
    (folder / f"{name}.bit").write_bytes(b"")  # PYNQ only checks that it exists
    dev = VirtualZcu104(limits, p)
    import deltamtl.host.pynq_driver  # noqa: F401  (registers the IP drivers' VLNVs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        overlay = pynq.Overlay(str(folder / f"{name}.bit"), download=False, device=dev)
    return overlay, dev
