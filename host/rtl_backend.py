"""The ``rtl`` backend: the SystemVerilog core under Verilator, driven by cocotb.

A live executor, not a replay: the cocotb bench ``serve_packets`` (rtl/bench/cocotb_core.py)
runs in a simulator subprocess started through ``deltamtl.rtl.sim.run_cocotb`` and stays up
for the video; each site job is packed into its AXI4-Stream packet here, sent over a named
pipe, driven into the core, and the core's output packet comes back the same way. The
core's resident weight bank and reuse buffer therefore carry over between jobs exactly as
on the board. Slow (every job is a cycle-accurate simulation): tests run it on 2 frames.
"""

from __future__ import annotations

import os
import struct
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.vectors import write_vectors
from deltamtl.host.runner import PacketExecutor
from deltamtl.rtl import sim

_PACKET, _RESET, _END = 0, 1, 2


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class RtlCore:
    """``run_packet``/``reset`` of the RTL core in a live simulator subprocess."""

    def __init__(self, limits: CoreLimits, lanes: int = 8, jobs: int = 2) -> None:
        # Lanes change the cycle count, never the bits: a narrow build verilates faster.
        # nnz and the weight bank round up to powers of two, so models that differ only
        # in their sparsity share one Verilator build (larger maxima never change a bit
        # of an accepted job).
        weights = min(_pow2(limits.max_weights), limits.max_in * limits.max_out)
        self.limits = replace(limits, lanes=min(limits.lanes, lanes),
                              max_nnz_dw=_pow2(limits.max_nnz_dw), max_weights=weights)
        self.build = sim.build_core(self.limits, jobs=jobs)
        self._dir = Path(tempfile.mkdtemp(prefix="deltamtl-rtl-"))
        self._in, self._out = self._dir / "req", self._dir / "ans"
        os.mkfifo(self._in)
        os.mkfifo(self._out)
        # the bench reads the build's maxima (its watchdog budgets) from a .dmtv header
        self._limits_file = self._dir / "limits.dmtv"
        write_vectors(self._limits_file, [], self.limits)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._simulate, daemon=True)
        self._thread.start()
        # Opening a FIFO blocks until the other side opens it: if the simulator dies before
        # it does (a failed build, a bench error), wait for it a bounded time, not forever.
        self._req = self._open_fifo(self._in, "wb")
        self._ans = self._open_fifo(self._out, "rb")

    def _open_fifo(self, path: Path, mode: str, timeout_s: float = 300.0):
        """open(path, mode) on a FIFO, in a helper thread so that a simulator that ends (or
        never starts) before opening its side turns into an error naming its log."""
        box: dict = {}

        def opener() -> None:
            box["f"] = open(path, mode)  # noqa: SIM115  (held open for the video)

        t = threading.Thread(target=opener, daemon=True)
        t.start()
        deadline = time.monotonic() + timeout_s
        while t.is_alive():
            t.join(0.1)
            if t.is_alive() and (not self._thread.is_alive() or time.monotonic() > deadline):
                # open the other side ourselves so the blocked open returns, then give up
                other = os.O_RDONLY if "w" in mode else os.O_WRONLY
                os.close(os.open(path, other | os.O_NONBLOCK))
                t.join(5)
                if "f" in box:
                    box["f"].close()
                why = ("the simulator ended" if not self._thread.is_alive()
                       else f"no simulator in {timeout_s:.0f} s")
                raise self._gone(f"{why} before opening {path.name}")
        return box["f"]

    def _gone(self, why: str) -> RuntimeError:
        log = sim.cocotb_log(self.build, f"serve{os.getpid()}")
        return RuntimeError(f"RTL simulator: {why} ({self.error or 'no error reported'}); log: {log}")

    def _simulate(self) -> None:
        try:
            sim.run_cocotb(self.build, "serve_packets", tag=f"serve{os.getpid()}",
                           env={"DMTV_SERVE_IN": str(self._in), "DMTV_SERVE_OUT": str(self._out),
                                "DMTV_PATH": str(self._limits_file)})
        except BaseException as exc:  # reported on the next request
            self.error = exc

    def _ask(self, kind: int, words: np.ndarray) -> np.ndarray:
        words = np.ascontiguousarray(words, dtype="<u8")
        try:
            self._req.write(struct.pack("<II", kind, words.size) + words.tobytes())
            self._req.flush()
            if kind == _END:
                return np.zeros(0, np.uint64)
            head = self._ans.read(4)
            if len(head) < 4:
                raise EOFError("simulator closed its pipe")
            (n,) = struct.unpack("<I", head)
            return np.frombuffer(self._ans.read(8 * n), dtype="<u8").astype(np.uint64)
        except (OSError, EOFError) as exc:
            raise RuntimeError(f"RTL simulator gone ({self.error or exc}); log: "
                               f"{sim.cocotb_log(self.build, f'serve{os.getpid()}')}") from exc

    def run_packet(self, words: np.ndarray) -> np.ndarray:
        return self._ask(_PACKET, words)

    def reset(self) -> None:
        self._ask(_RESET, np.zeros(0, np.uint64))

    def close(self) -> None:
        if self._thread.is_alive():
            self._ask(_END, np.zeros(0, np.uint64))
            self._thread.join(timeout=60)
        for fh in (self._req, self._ans):
            fh.close()
        for p in (self._in, self._out, self._limits_file):
            p.unlink(missing_ok=True)
        self._dir.rmdir()


class RtlExecutor(PacketExecutor):
    """The runner's executor interface over :class:`RtlCore` (``close()`` when done).
    Packets are laid out in beats of the build's ``limits.beat_words`` (PacketExecutor
    reads ``RtlCore.limits``); the SV core builds only at 1 so far."""

    def __init__(self, limits: CoreLimits, lanes: int = 8, jobs: int = 2) -> None:
        super().__init__(RtlCore(limits, lanes=lanes, jobs=jobs))

    def close(self) -> None:
        self.core.close()
