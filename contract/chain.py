"""Job chains: one fetch/commit launch runs a whole frame of site jobs (docs/host.md).

Between two sites the host runs float ops on the previous site's outputs, so a frame's
jobs cannot all be written before the launch. A chain therefore lists every job of a
frame in DDR; a link may carry ``CHAIN_WAIT``: fetch then waits until the chain's
*doorbell* word (written by the host after a flush) reaches the job's index + 1. commit
writes each job's status and tag into the chain's *status array*, which the host polls
(invalidate, then read) instead of the kernels' ap_done registers.

Layout (little-endian, every structure 8-byte aligned, offsets from the buffer base, all in
the one buffer the kernels' ``buf_bytes`` register declares):

* header, ``CHAIN_HEADER_BYTES``: u32 magic ``CHAIN_MAGIC``, u32 contract version, u32
  n_jobs, u32 0, u64 doorbell offset, u64 status-array offset, u64 first link, u64 0.
* link, ``CHAIN_LINK_BYTES``: u64 next link (``CHAIN_END`` after the last), u64 job
  descriptor offset (contract.descriptor), u32 flags (``CHAIN_WAIT``), u32 0, u64 0.
* doorbell: one u64 word; the low 32 bits count the jobs whose inputs are in DDR.
* status array: n_jobs entries of ``CHAIN_STATUS_BYTES``: u32 commit's KernelStatus for
  the job (DONE always set once written; the host zeroes the array before the launch),
  u32 (descriptor tag) | (job index << STATUS_INDEX_LSB), u32 the trailer's nnz_act (the non-zero
  activations the core used: the host's MAC count), u32 0.

The kernels' ``desc_offset`` register points either at a job descriptor (``DESC_MAGIC``:
one job, as before) or at a chain header (``CHAIN_MAGIC``). A chain is validated whole
before fetch streams or commit writes anything; a malformed one (a link outside the buffer
or misaligned, links that do not run strictly forward -- which is how a cycle shows --, a
link count other than n_jobs or above ``MAX_CHAIN_JOBS``) sets one error bit and touches
no memory. Each job's descriptor is then validated when its turn comes, exactly as a
single job's (a refused job gets its status entry and the chain goes on).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from deltamtl.contract.formats import CONTRACT_VERSION
from deltamtl.contract.packets import HEADER_FIELDS, WORD_BYTES
from deltamtl.contract.registers import KernelStatus

CHAIN_MAGIC = 0x43544D44  # b"DMTC" little-endian
CHAIN_HEADER_BYTES = 48
CHAIN_LINK_BYTES = 32
CHAIN_STATUS_BYTES = 16
CHAIN_DOORBELL_BYTES = 8
CHAIN_END = 0xFFFF_FFFF_FFFF_FFFF
CHAIN_WAIT = 1  # link flag: wait for the doorbell before fetching this job
CHAIN_VALID_FLAGS = CHAIN_WAIT
# A 4-task ViT-Tiny frame is about 200 site jobs; the bound keeps the walk finite.
MAX_CHAIN_JOBS = 1024
# The status entry's second word: the header's tag in its low bits, the job index above.
STATUS_TAG_BITS = next(f.width for f in HEADER_FIELDS if f.name == "tag")
STATUS_INDEX_LSB = STATUS_TAG_BITS
STATUS_INDEX_BITS = 32 - STATUS_TAG_BITS

# Word indices (uint32) inside the header and a link.
CHAIN_WORD_MAGIC = 0
CHAIN_WORD_VERSION = 1
CHAIN_WORD_NJOBS = 2
CHAIN_WORD_DOORBELL = 4
CHAIN_WORD_STATUS = 6
CHAIN_WORD_FIRST = 8
LINK_WORD_NEXT = 0
LINK_WORD_DESC = 2
LINK_WORD_FLAGS = 4

_HEADER = struct.Struct("<4I4Q")
_LINK = struct.Struct("<2Q2IQ")
assert _HEADER.size == CHAIN_HEADER_BYTES and _LINK.size == CHAIN_LINK_BYTES


@dataclass(frozen=True)
class ChainLink:
    offset: int  # where the link lives
    desc_offset: int
    wait: bool


@dataclass(frozen=True)
class ChainLayout:
    """Where a chain's structures live; links run forward from ``header + CHAIN_HEADER_BYTES``."""

    header: int
    doorbell: int
    status: int
    links: tuple[ChainLink, ...]

    @property
    def n_jobs(self) -> int:
        return len(self.links)

    def status_offset(self, k: int) -> int:
        return self.status + CHAIN_STATUS_BYTES * k


def chain_bytes(n_jobs: int) -> int:
    """Bytes of a chain laid out by :func:`plan_chain`: header, links, doorbell, status."""
    return (CHAIN_HEADER_BYTES + CHAIN_LINK_BYTES * n_jobs + CHAIN_DOORBELL_BYTES
            + CHAIN_STATUS_BYTES * n_jobs)


def plan_chain(at: int, desc_offsets: list[int], wait: bool = True) -> ChainLayout:
    """Header at ``at``, then the links in job order, the doorbell, the status array."""
    if at % WORD_BYTES:
        raise ValueError(f"chain header at {at}: not {WORD_BYTES}-byte aligned")
    n = len(desc_offsets)
    pos = at + CHAIN_HEADER_BYTES
    links = tuple(ChainLink(pos + CHAIN_LINK_BYTES * k, int(d), wait) for k, d in enumerate(desc_offsets))
    doorbell = pos + CHAIN_LINK_BYTES * n
    return ChainLayout(at, doorbell, doorbell + CHAIN_DOORBELL_BYTES, links)


def pack_chain(layout: ChainLayout) -> dict[int, bytes]:
    """The header's and every link's bytes, by offset (doorbell and status not included:
    the host zeroes them itself before each launch)."""
    first = layout.links[0].offset if layout.links else CHAIN_END
    out = {layout.header: _HEADER.pack(CHAIN_MAGIC, CONTRACT_VERSION, layout.n_jobs, 0,
                                       layout.doorbell, layout.status, first, 0)}
    for k, link in enumerate(layout.links):
        nxt = layout.links[k + 1].offset if k + 1 < layout.n_jobs else CHAIN_END
        out[link.offset] = _LINK.pack(nxt, link.desc_offset, CHAIN_WAIT if link.wait else 0, 0, 0)
    return out


def write_chain(buf: np.ndarray, layout: ChainLayout) -> None:
    for off, raw in pack_chain(layout).items():
        buf[off: off + len(raw)] = np.frombuffer(raw, np.uint8)


def is_chain(buf: np.ndarray, buf_bytes: int, offset: int) -> bool:
    """What the kernels decide from the word at ``desc_offset``: a chain or a single job."""
    if offset % WORD_BYTES or offset + CHAIN_HEADER_BYTES > buf_bytes:
        return False
    return struct.unpack_from("<I", bytes(buf[offset: offset + 4]))[0] == CHAIN_MAGIC


def pack_status_tag(tag: int, index: int) -> int:
    tag_mask, index_mask = (1 << STATUS_TAG_BITS) - 1, (1 << STATUS_INDEX_BITS) - 1
    return (int(tag) & tag_mask) | ((int(index) & index_mask) << STATUS_INDEX_LSB)


def _inside(off: int, size: int, buf_bytes: int) -> bool:
    return (off % WORD_BYTES == 0 and off <= buf_bytes
            and -(-size // WORD_BYTES) * WORD_BYTES <= buf_bytes - off)


def _overlap(a: int, an: int, b: int, bn: int) -> bool:
    return a < b + bn and b < a + an


def validate_chain(buf: np.ndarray, buf_bytes: int, offset: int
                   ) -> tuple[int, list[ChainLink]]:
    """hls/include/dmtl_chain.h in Python: (0 or the one KernelStatus error bit, links
    read so far). Checks, in the kernels' order: header placement (CHAIN_LINK), version
    (BAD_DESC), n_jobs in [1, MAX_CHAIN_JOBS] (CHAIN_LENGTH), doorbell and status array
    inside the buffer (CHAIN_LINK) and disjoint from the header and each other (OVERLAP),
    then per link: inside and aligned (CHAIN_LINK), strictly after the previous structure
    (CHAIN_CYCLE), disjoint from the status array and doorbell (OVERLAP), flags
    (BAD_DESC); after n_jobs links the next must be CHAIN_END (CHAIN_LENGTH)."""
    raw = np.ascontiguousarray(buf, dtype=np.uint8)  # read in place: no copy of a large buffer
    if not _inside(offset, CHAIN_HEADER_BYTES, buf_bytes):
        return int(KernelStatus.CHAIN_LINK), []
    magic, version, n, _r, doorbell, status, first, _z = _HEADER.unpack_from(raw, offset)
    if magic != CHAIN_MAGIC or version != CONTRACT_VERSION:
        return int(KernelStatus.BAD_DESC), []
    if not 1 <= n <= MAX_CHAIN_JOBS:
        return int(KernelStatus.CHAIN_LENGTH), []
    status_len = CHAIN_STATUS_BYTES * n
    if not (_inside(doorbell, CHAIN_DOORBELL_BYTES, buf_bytes)
            and _inside(status, status_len, buf_bytes)):
        return int(KernelStatus.CHAIN_LINK), []
    if (_overlap(status, status_len, offset, CHAIN_HEADER_BYTES)
            or _overlap(status, status_len, doorbell, CHAIN_DOORBELL_BYTES)):
        return int(KernelStatus.OVERLAP), []
    links: list[ChainLink] = []
    prev_end = offset + CHAIN_HEADER_BYTES
    pos = first
    for _k in range(n):
        if pos == CHAIN_END:
            return int(KernelStatus.CHAIN_LENGTH), links
        if not _inside(pos, CHAIN_LINK_BYTES, buf_bytes):
            return int(KernelStatus.CHAIN_LINK), links
        if pos < prev_end:
            return int(KernelStatus.CHAIN_CYCLE), links
        if (_overlap(pos, CHAIN_LINK_BYTES, status, status_len)
                or _overlap(pos, CHAIN_LINK_BYTES, doorbell, CHAIN_DOORBELL_BYTES)):
            return int(KernelStatus.OVERLAP), links
        nxt, desc, flags, _r2, _z2 = _LINK.unpack_from(raw, pos)
        if flags & ~CHAIN_VALID_FLAGS:
            return int(KernelStatus.BAD_DESC), links
        links.append(ChainLink(pos, desc, bool(flags & CHAIN_WAIT)))
        prev_end = pos + CHAIN_LINK_BYTES
        pos = nxt
    if pos != CHAIN_END:
        return int(KernelStatus.CHAIN_LENGTH), links
    return 0, links
