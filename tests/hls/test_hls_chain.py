"""Job chains in the C++ kernels (g++ C simulation through the emulation library).

* A chain whose doorbells are all rung runs through the real top functions of fetch and
  commit (one start each): every job's outputs equal GoldenCore's, every status entry holds
  DONE, the job's tag and its index.
* Stepped job by job (as the virtual ZCU104 does), a job waits for its doorbell.
* Malformed chains (a link outside the buffer or misaligned, a backward link / cycle, too
  long or too short, n_jobs above the maximum, a status array over the header, bad flags)
  are refused by fetch and commit with the bit contract/chain.py names, fetch streams
  nothing and the buffer stays byte-identical.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from deltamtl.contract import chain as ch
from deltamtl.contract import ddr_image
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.packets import CoreStatus
from deltamtl.contract.registers import KernelStatus
from deltamtl.hls.emulator import HlsSystemExecutor

from tests.helpers.seeding import SEED
from tests.hls.test_hls_system import LIM, _sequence

DONE = int(KernelStatus.DONE)


def _chain_image(jobs, wait: bool = True, fill: int = 0x5A):
    """Jobs laid out one after another, then the chain; returns (buf, layouts, chain)."""
    layouts, pos = [], 0
    images = []
    for job in jobs:
        img, layout = ddr_image.layout_job(job, desc_offset=pos, fill=fill)
        images.append(img)
        layouts.append(layout)
        pos = layout.buf_bytes + 16
    chain = ch.plan_chain(pos, [lay.desc_offset for lay in layouts], wait=wait)
    buf = np.full(pos + ch.chain_bytes(len(jobs)) + 16, fill, np.uint8)
    for img, layout in zip(images, layouts, strict=True):
        buf[layout.desc_offset: layout.buf_bytes] = img[layout.desc_offset:]
    ch.write_chain(buf, chain)
    buf[chain.doorbell: chain.status + ch.CHAIN_STATUS_BYTES * chain.n_jobs] = 0
    return buf, layouts, chain


def _set_doorbell(buf: np.ndarray, chain: ch.ChainLayout, value: int) -> None:
    buf[chain.doorbell: chain.doorbell + 8] = np.frombuffer(struct.pack("<Q", value), np.uint8)


def _status(buf: np.ndarray, chain: ch.ChainLayout, k: int) -> tuple[int, int]:
    return struct.unpack_from("<II", buf.tobytes(), chain.status_offset(k))


@pytest.fixture(scope="module")
def jobs():
    rng = np.random.default_rng([SEED, 77])
    out = []
    while len(out) < 12:
        out += list(_sequence(rng, n_frames=2))
    return out


def test_chain_through_the_top_functions_equals_golden(jobs) -> None:
    buf, layouts, chain = _chain_image(jobs)
    _set_doorbell(buf, chain, len(jobs))  # every job's inputs are there
    system = HlsSystemExecutor(LIM)
    run = system.run_buffer(buf, buf.size, chain.header)
    assert run.fetch_status == DONE and run.commit_status == DONE
    gold = GoldenCore(LIM)
    for k, (job, layout) in enumerate(zip(jobs, layouts, strict=True)):
        want = gold.run_job(job)
        status, tagword = _status(buf, chain, k)
        assert tagword == ch.pack_status_tag(job.tag, k), k
        if want.status != CoreStatus.OK:
            assert status == DONE | int(KernelStatus.CORE), k
            continue
        assert status == DONE, (k, KernelStatus(status))
        got = ddr_image.read_outputs(buf, layout)
        assert np.array_equal(got["y"], want.y), k
        if want.x_ref is not None:
            assert np.array_equal(got["x_ref"], want.x_ref) and np.array_equal(got["y_ref"], want.y_ref)


def test_stepped_chain_waits_for_its_doorbell(jobs) -> None:
    buf, layouts, chain = _chain_image(jobs[:4])
    system = HlsSystemExecutor(LIM)
    err, n, link = system.chain_check(buf, buf.size, chain.header)
    assert (err, n, link) == (0, 4, chain.links[0].offset)
    before = buf.copy()
    assert system.chain_step(buf, buf.size, chain.header, 0, link) is None  # doorbell 0
    assert np.array_equal(buf, before)
    gold = GoldenCore(LIM)
    for k in range(4):
        _set_doorbell(buf, chain, k + 1)
        run, link = system.chain_step(buf, buf.size, chain.header, k, link)
        assert _status(buf, chain, k) == (int(run.commit_status), ch.pack_status_tag(jobs[k].tag, k))
        if gold.run_job(jobs[k]).status == CoreStatus.OK:
            assert run.commit_status == DONE
        if k < 3:
            assert system.chain_step(buf, buf.size, chain.header, k + 1, link) is None
    assert link == ch.CHAIN_END


def _put(buf: np.ndarray, at: int, fmt: str, *values: int) -> None:
    raw = struct.pack(fmt, *values)
    buf[at: at + len(raw)] = np.frombuffer(raw, np.uint8)


def _malformed(jobs):
    """(name, expected bit, image, chain header offset) for every way a chain can be wrong."""
    base, _layouts, chain = _chain_image(jobs[:3])
    links = chain.links
    hdr = chain.header
    out = []

    def variant(name: str, bit: KernelStatus, edit) -> None:
        b = base.copy()
        edit(b)
        out.append((name, int(bit), b))

    variant("link_beyond_buffer", KernelStatus.CHAIN_LINK,
            lambda b: _put(b, links[0].offset, "<Q", base.size))
    variant("link_misaligned", KernelStatus.CHAIN_LINK,
            lambda b: _put(b, links[0].offset, "<Q", links[1].offset + 4))
    variant("cycle", KernelStatus.CHAIN_CYCLE,
            lambda b: _put(b, links[1].offset, "<Q", links[0].offset))
    variant("self_link", KernelStatus.CHAIN_CYCLE,
            lambda b: _put(b, links[1].offset, "<Q", links[1].offset))
    variant("first_link_before_header", KernelStatus.CHAIN_CYCLE,
            lambda b: _put(b, hdr + 4 * ch.CHAIN_WORD_FIRST, "<Q", 0))
    variant("too_long", KernelStatus.CHAIN_LENGTH,
            lambda b: _put(b, hdr + 4 * ch.CHAIN_WORD_NJOBS, "<I", 2))
    variant("too_short", KernelStatus.CHAIN_LENGTH,
            lambda b: _put(b, hdr + 4 * ch.CHAIN_WORD_NJOBS, "<I", 4))
    variant("above_maximum", KernelStatus.CHAIN_LENGTH,
            lambda b: _put(b, hdr + 4 * ch.CHAIN_WORD_NJOBS, "<I", ch.MAX_CHAIN_JOBS + 1))
    variant("no_jobs", KernelStatus.CHAIN_LENGTH,
            lambda b: _put(b, hdr + 4 * ch.CHAIN_WORD_NJOBS, "<I", 0))
    variant("status_beyond_buffer", KernelStatus.CHAIN_LINK,
            lambda b: _put(b, hdr + 4 * ch.CHAIN_WORD_STATUS, "<Q", base.size - 8))
    variant("status_over_header", KernelStatus.OVERLAP,
            lambda b: _put(b, hdr + 4 * ch.CHAIN_WORD_STATUS, "<Q", hdr))
    variant("status_over_links", KernelStatus.OVERLAP,
            lambda b: _put(b, hdr + 4 * ch.CHAIN_WORD_STATUS, "<Q", links[1].offset))
    variant("bad_version", KernelStatus.BAD_DESC,
            lambda b: _put(b, hdr + 4 * ch.CHAIN_WORD_VERSION, "<I", 99))
    variant("bad_link_flags", KernelStatus.BAD_DESC,
            lambda b: _put(b, links[1].offset + 4 * ch.LINK_WORD_FLAGS, "<I", 6))
    return out, hdr


def test_malformed_chains_are_refused_without_touching_memory(jobs) -> None:
    cases, hdr = _malformed(jobs)
    system = HlsSystemExecutor(LIM)
    for name, bit, img in cases:
        assert ch.validate_chain(img, img.size, hdr)[0] == bit, name
        assert system.chain_check(img, img.size, hdr)[0] == bit, name
        before = img.copy()
        run = system.run_buffer(img, img.size, hdr)
        assert (int(run.fetch_status), int(run.commit_status)) == (DONE | bit, DONE | bit), name
        assert run.trailer is None, name
        assert np.array_equal(img, before), name
        status, words, _lasts = system.fetch_only(img, img.size, hdr)
        assert int(status) == DONE | bit and words.size == 0, name
    # the chain header itself outside the declared buffer
    img = cases[0][2]
    assert ch.validate_chain(img, hdr + 40, hdr)[0] == int(KernelStatus.CHAIN_LINK)


def test_a_refused_job_inside_a_chain_gets_its_status_and_the_chain_goes_on(jobs) -> None:
    buf, layouts, chain = _chain_image(jobs[:3])
    # job 1's X region beyond the buffer: that job is refused, jobs 0 and 2 run
    _put(buf, layouts[1].desc_offset + 4 * (ddr_image.DESC_WORD_REGIONS + 2 * 9), "<Q", buf.size)
    _set_doorbell(buf, chain, 3)
    run = HlsSystemExecutor(LIM).run_buffer(buf, buf.size, chain.header)
    assert run.fetch_status == DONE and run.commit_status == DONE
    assert _status(buf, chain, 1)[0] == DONE | int(KernelStatus.REGION)
    assert _status(buf, chain, 0)[0] & DONE and _status(buf, chain, 2)[0] & DONE
