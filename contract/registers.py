"""The AXI4-Lite side of fetch and commit: their status bits and the register map
(ap_ctrl_hs control word, kernel arguments). The board design's addresses are in
:mod:`deltamtl.contract.platform`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class KernelStatus(enum.IntFlag):
    """Status register of fetch and commit. Any error bit: the kernel touched no memory
    beyond the descriptor (fetch) or wrote nothing (commit)."""

    OK = 0
    DONE = 1  # the run finished (set on success and on refusal)
    BAD_DESC = 2  # magic, version, mode or flag bits wrong
    DIMS = 4  # a dimension zero or above the compiled maxima, O*I above max_weights, or nnz
    #           above its maximum
    REGION = 8  # a used region (or the descriptor) outside the declared buffer or misaligned
    OVERLAP = 16  # an output region overlaps another used region or the descriptor
    CSR = 32  # row pointers not monotone, not 0..nnz, or a column index >= in_dim
    CORE = 64  # commit: the core's trailer reported an error
    TAG = 128  # commit: the trailer's tag differs from the descriptor's
    # Job chains (contract/chain.py): the chain is refused whole, nothing touched.
    CHAIN_LINK = 256  # header, link, doorbell or status array outside the buffer/misaligned
    CHAIN_CYCLE = 512  # a link not strictly after the previous one (a cycle or a backward link)
    CHAIN_LENGTH = 1024  # n_jobs 0 or above MAX_CHAIN_JOBS, or the links end early or run on


# ---------------------------------------------------------------------------------------
# AXI4-Lite register map of fetch and commit (ap_ctrl_hs, Vitis HLS offset convention)
# ---------------------------------------------------------------------------------------
REG_CTRL = 0x00  # bit0 ap_start, bit1 ap_done (clear on read), bit2 ap_idle, bit3 ap_ready


REG_GIE = 0x04


REG_IER = 0x08


REG_ISR = 0x0C


CTRL_START = 0x1


CTRL_DONE = 0x2


CTRL_IDLE = 0x4


CTRL_READY = 0x8


# AXI4-Lite words are 32 bits; a 64-bit argument is two of them, low word first.
AXI_LITE_BITS = 32
AXI_LITE_BYTES = AXI_LITE_BITS // 8


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    bits: int  # 32 or 64 (64-bit values are two words, low word first)
    direction: str  # "in" (host writes) or "out" (kernel writes, with an ap_vld word after)


KERNEL_ARGS: tuple[Register, ...] = (
    Register("gmem", 0x10, 64, "in"),  # buffer base address (physical)
    Register("buf_bytes", 0x1C, 64, "in"),  # size the host declares for that buffer
    Register("desc_offset", 0x28, 64, "in"),  # descriptor's byte offset inside the buffer
    Register("status", 0x34, 32, "out"),  # KernelStatus; valid bit in the word at 0x38
)


REG_STATUS_CTRL = 0x38


def register(name: str) -> Register:
    for reg in KERNEL_ARGS:
        if reg.name == name:
            return reg
    raise KeyError(f"no kernel register named {name!r}")
