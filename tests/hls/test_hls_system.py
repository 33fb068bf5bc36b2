"""fetch -> core -> commit over a DDR byte buffer (C++ kernels via ctypes) against the golden.

Valid jobs: the results read back from the output regions equal GoldenCore's, and no byte
outside the output regions changes. Refused descriptors: the right KernelStatus bit, fetch
streams nothing, and the whole buffer stays byte-identical. A forked child runs the same
kernels on buffers that end at a PROT_NONE page, so any access beyond buf_bytes crashes it.
"""

from __future__ import annotations

import ctypes
import mmap
import multiprocessing
import struct

import numpy as np
import pytest
from deltamtl.contract import ddr_image as descriptor
from deltamtl.contract.descriptor import (
    DESC_BYTES,
    DESC_WORD_HEADER,
    DESC_WORD_MAGIC,
    DESC_WORD_REGIONS,
    DESC_WORD_VERSION,
    DESC_WORDS,
    OUTPUT_REGIONS,
    REGION_ALIGN,
    Region,
)
from deltamtl.contract.encoding import pack_job
from deltamtl.contract.formats import VALID_FLAGS, JobFlag, Mode, choose_requant
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import CsrDelta, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import (
    HEADER_FIELDS,
    INT8_PER_WORD,
    TRAILER_FIELDS,
    CoreStatus,
    words_for,
)
from deltamtl.contract.registers import KernelStatus
from deltamtl.hls.emulator import HlsKernelError, HlsSystemExecutor

from tests.helpers import seeding

# max_weights below max_in * max_out: the O*I DIMS refusal is reachable with in-range dims
LIM = CoreLimits(max_tokens=24, max_in=48, max_out=40, max_nnz_dw=400, lanes=8,
                 max_weights=48 * 24)
DONE = KernelStatus.DONE
_HDR = {f.name: f for f in HEADER_FIELDS}
_TRL = {f.name: f for f in TRAILER_FIELDS}
_DESC_WORD_BYTES = DESC_BYTES // DESC_WORDS  # descriptor words are uint32
_DESC_WORD_BITS = 8 * _DESC_WORD_BYTES  # 64-bit values span two words, (lo, hi)
# in_dim and out_dim share a header word, out_dim right above in_dim
_OUT_ABOVE_IN = _HDR["out_dim"].lsb - _HDR["in_dim"].lsb
assert _HDR["out_dim"].word == _HDR["in_dim"].word and _OUT_ABOVE_IN == _HDR["in_dim"].width
# header fields the fuzzer overwrites (th and tag are any value the core accepts or echoes)
_FUZZED_FIELDS = ("tokens", "in_dim", "out_dim", "nnz_dw", "mode", "flags")


def _job(rng, mode, flags, dims, w, dw_density=0.0, refs=None) -> SiteJob:
    p, i, o = dims
    mult, shift = choose_requant(rng.uniform(0.5, 2, o) * 127 / (128 * 128 * np.sqrt(i)))
    dw = None
    if dw_density:
        dense = np.where(rng.random((o, i)) < dw_density, rng.integers(-20, 21, (o, i)), 0)
        dense = np.clip(w.astype(np.int32) + dense, -128, 127) - w.astype(np.int32)
        dw = CsrDelta.from_dense(dense.astype(np.int8))
        if dw.nnz > LIM.max_nnz_dw:
            dw = None
    job = SiteJob(Mode(mode), JobFlag(flags), int(rng.integers(1, 5)),
                  rng.integers(-128, 128, (p, i)).astype(np.int8), mult, shift, o,
                  w=w if flags & JobFlag.LOAD_W else None, dw=dw,
                  tag=int(rng.integers(0, 1 << _HDR["tag"].width)))
    if mode != Mode.TEMPORAL:
        job.bias = rng.integers(-(1 << 20), 1 << 20, o).astype(np.int32)
    if flags & JobFlag.LOAD_REF and mode != Mode.DENSE:
        job.x_ref, job.y_ref = refs
    return job


def _sequence(rng, n_frames=3):
    """A site over a few frames: DENSE keyframe, TEMPORAL (loaded / resident refs), TASK."""
    p, i, o = (int(v) for v in rng.integers(1, [LIM.max_tokens, LIM.max_in, LIM.max_out],
                                            endpoint=True))
    dims = (p, min(i, LIM.max_weights // o), o)
    w = rng.integers(-128, 128, dims[2:0:-1]).astype(np.int8)
    yield _job(rng, Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, dims, w, dw_density=0.1)
    refs = None
    for _ in range(n_frames):
        if refs is not None and rng.random() < 0.5:
            yield _job(rng, Mode.TEMPORAL, JobFlag.LOAD_REF | JobFlag.EMIT_REF, dims, w,
                       dw_density=0.2 * rng.random(), refs=refs)
        else:
            yield _job(rng, Mode.TEMPORAL, JobFlag.EMIT_REF, dims, w)
        load_w = JobFlag.LOAD_W if rng.random() < 0.3 else JobFlag.NONE
        yield _job(rng, Mode.TASK, JobFlag.EMIT_REF | load_w, dims, w, dw_density=0.3)
        yield _job(rng, Mode.TASK, JobFlag.NONE, dims, w, dw_density=0.05)
        if refs is not None:  # a sub-task reusing references it brings along
            yield _job(rng, Mode.TASK, JobFlag.LOAD_REF | JobFlag.EMIT_REF, dims, w,
                       dw_density=0.2, refs=refs)
        # a keyframe that names LOAD_REF (ignored in DENSE: no reference sections)
        yield _job(rng, Mode.DENSE, JobFlag.LOAD_REF | JobFlag.EMIT_REF, dims, w)
        refs = (rng.integers(-128, 128, (dims[0], dims[1])).astype(np.int8),
                rng.integers(-(1 << 20), 1 << 20, (dims[0], dims[2])).astype(np.int32))


def _outside_outputs(buf: np.ndarray, layout: descriptor.JobLayout) -> np.ndarray:
    keep = np.ones(buf.size, dtype=bool)
    for region, off in layout.offsets.items():
        if region in OUTPUT_REGIONS:
            keep[off: off + layout.region_size(region)] = False
    return buf[keep]


def test_system_matches_golden_with_resident_state():
    rng = seeding.rng("test_system_matches_golden_with_resident_state")
    system, gold = HlsSystemExecutor(LIM), GoldenCore(LIM)
    n_jobs = 0
    for _seq in range(6):
        for job in _sequence(rng):
            want = gold.run_job(job)
            buf, layout = descriptor.layout_job(job, fill=int(rng.integers(0, 256)))
            before = buf.copy()
            run = system.run_buffer(buf, layout.buf_bytes, layout.desc_offset)
            assert run.fetch_status == DONE and run.commit_status == DONE, run
            assert run.core_status == want.status == CoreStatus.OK
            outs = descriptor.read_outputs(buf, layout)
            assert np.array_equal(outs["y"], want.y), f"Y differs (tag {job.tag})"
            if job.flags & JobFlag.EMIT_REF:
                assert np.array_equal(outs["x_ref"], want.x_ref)
                assert np.array_equal(outs["y_ref"], want.y_ref)
            # nothing but the output regions changed (incl. their padding bytes)
            assert np.array_equal(_outside_outputs(buf, layout), _outside_outputs(before, layout))
            n_jobs += 1
    assert n_jobs >= 40


def test_run_job_interface_and_core_refusal():
    rng = seeding.rng("test_run_job_interface_and_core_refusal")
    system, gold = HlsSystemExecutor(LIM), GoldenCore(LIM)
    dims = (7, 21, 13)
    w = rng.integers(-128, 128, (13, 21)).astype(np.int8)
    # no resident references yet: the core refuses, commit writes nothing and reports CORE
    job = _job(rng, Mode.TEMPORAL, JobFlag.LOAD_W, dims, w)
    buf, layout = descriptor.layout_job(job, fill=0x5A)
    before = buf.copy()
    run = system.run_buffer(buf, layout.buf_bytes, layout.desc_offset)
    assert run.core_status == CoreStatus.NO_STATE
    assert run.commit_status == DONE | KernelStatus.CORE and run.fetch_status == DONE
    assert np.array_equal(buf, before)
    got = system.run_job(job)
    assert got.status == gold.run_job(job).status == CoreStatus.NO_STATE
    for job in _sequence(rng, n_frames=2):
        got, want = system.run_job(job), gold.run_job(job)
        assert (got.status, got.tag, got.nnz_act) == (want.status, want.tag, want.nnz_act)
        assert np.array_equal(got.y, want.y)
    # a job too large for the compiled maxima: refused by fetch/commit before the core
    big = _job(rng, Mode.DENSE, JobFlag.LOAD_W, (LIM.max_tokens + 1, 3, 2),
               rng.integers(-128, 128, (2, 3)).astype(np.int8))
    with pytest.raises(HlsKernelError, match="DIMS"):
        system.run_job(big)
    # every dim in range but O*I above max_weights: DIMS from fetch/commit, nothing written
    o, i = LIM.max_out, LIM.max_weights // LIM.max_out + 1
    wide = _job(rng, Mode.DENSE, JobFlag.LOAD_W, (2, i, o),
                rng.integers(-128, 128, (o, i)).astype(np.int8))
    assert gold.run_job(wide).status == CoreStatus.DIMS
    buf, layout = descriptor.layout_job(wide, fill=0x3C)
    before = buf.copy()
    assert descriptor.validate_descriptor(buf, layout.buf_bytes, layout.desc_offset, LIM) == \
        KernelStatus.DIMS
    _check_refused(system, buf, layout.buf_bytes, layout.desc_offset, KernelStatus.DIMS, "wide")
    assert np.array_equal(buf, before)
    # one column fewer fits the bank exactly and runs; so do the widest rows (I = max_in)
    for o_fit, i_fit in ((o, i - 1), (LIM.max_weights // LIM.max_in, LIM.max_in)):
        w_fit = rng.integers(-128, 128, (o_fit, i_fit)).astype(np.int8)
        fits = _job(rng, Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, (3, i_fit, o_fit), w_fit,
                    dw_density=0.05)
        got, want = system.run_job(fits), gold.run_job(fits)
        assert got.status == want.status == CoreStatus.OK
        assert np.array_equal(got.y, want.y) and np.array_equal(got.y_ref, want.y_ref)
        # the resident bank of that shape serves a TASK with dW (weight-sparse pass)
        task = _job(rng, Mode.TASK, JobFlag.EMIT_REF, (3, i_fit, o_fit), w_fit, dw_density=0.2)
        got, want = system.run_job(task), gold.run_job(task)
        assert got.status == want.status == CoreStatus.OK
        assert np.array_equal(got.y, want.y) and np.array_equal(got.y_ref, want.y_ref)


# ---- refused descriptors ------------------------------------------------------------------
def _base_job(rng) -> tuple[SiteJob, np.ndarray, descriptor.JobLayout]:
    dims = (5, 19, 11)
    w = rng.integers(-128, 128, (11, 19)).astype(np.int8)
    job = _job(rng, Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, dims, w, dw_density=0.3)
    assert job.nnz_dw > 2
    buf, layout = descriptor.layout_job(job, fill=0xC3)
    return job, buf, layout


def _set_word(buf, layout, index, value):
    at = layout.desc_offset + _DESC_WORD_BYTES * index
    buf[at: at + _DESC_WORD_BYTES] = np.frombuffer(struct.pack("<I", value & ((1 << _DESC_WORD_BITS) - 1)), np.uint8)


def _set_region(buf, layout, region, offset):
    _set_word(buf, layout, DESC_WORD_REGIONS + 2 * int(region), offset)
    _set_word(buf, layout, DESC_WORD_REGIONS + 2 * int(region) + 1, offset >> _DESC_WORD_BITS)


def _set_header_field(buf, layout, name, value, width=None):
    """Overwrite a header field in the descriptor's copy of the header. ``width`` wider
    than the field spills into the next field(s) of the same word (in_dim and out_dim at
    once, for an O*I too large with each dimension in range)."""
    f = _HDR[name]
    width = f.width if width is None else width
    hw = list(layout.header_words)
    hw[f.word] = (hw[f.word] & ~(((1 << width) - 1) << f.lsb)) | (value << f.lsb)
    for k, v in enumerate(hw):
        _set_word(buf, layout, DESC_WORD_HEADER + 2 * k, v)
        _set_word(buf, layout, DESC_WORD_HEADER + 2 * k + 1, v >> _DESC_WORD_BITS)


def _csr_i32(buf, layout, k, value):
    at = layout.offsets[Region.DW_INDPTR] + 4 * k
    buf[at: at + 4] = np.frombuffer(struct.pack("<i", value), np.uint8)


def _refusals(rng):
    """(name, expected bit, mutate(buf, layout) -> buf_bytes or None, desc_offset or None)."""
    def case(name, bit, fn):
        return name, bit, fn

    return [
        case("magic", KernelStatus.BAD_DESC, lambda b, lay: _set_word(b, lay, DESC_WORD_MAGIC, 0x1234)),
        case("version", KernelStatus.BAD_DESC, lambda b, lay: _set_word(b, lay, DESC_WORD_VERSION, 99)),
        case("mode", KernelStatus.BAD_DESC, lambda b, lay: _set_header_field(b, lay, "mode", 3)),
        case("flags", KernelStatus.BAD_DESC, lambda b, lay: _set_header_field(b, lay, "flags", VALID_FLAGS + 1)),
        case("tokens0", KernelStatus.DIMS, lambda b, lay: _set_header_field(b, lay, "tokens", 0)),
        case("tokens_big", KernelStatus.DIMS,
             lambda b, lay: _set_header_field(b, lay, "tokens", LIM.max_tokens + 1)),
        case("in_big", KernelStatus.DIMS, lambda b, lay: _set_header_field(b, lay, "in_dim", 60000)),
        case("out_big", KernelStatus.DIMS,
             lambda b, lay: _set_header_field(b, lay, "out_dim", LIM.max_out + 1)),
        case("weights_big", KernelStatus.DIMS,  # each dim in range, O*I > max_weights
             lambda b, lay: _set_header_field(
                 b, lay, "in_dim", LIM.max_in | (LIM.max_out << _OUT_ABOVE_IN),
                 width=_OUT_ABOVE_IN + _HDR["out_dim"].width)),
        case("nnz_big", KernelStatus.DIMS,
             lambda b, lay: _set_header_field(b, lay, "nnz_dw", LIM.max_nnz_dw + 1)),
        case("x_beyond", KernelStatus.REGION,
             lambda b, lay: _set_region(b, lay, Region.X, lay.buf_bytes - REGION_ALIGN)),
        case("y_huge", KernelStatus.REGION,
             lambda b, lay: _set_region(b, lay, Region.Y_OUT, (1 << 64) - REGION_ALIGN)),
        case("w_misaligned", KernelStatus.REGION,
             lambda b, lay: _set_region(b, lay, Region.W, lay.offsets[Region.W] + REGION_ALIGN // 2)),
        case("y_misaligned", KernelStatus.REGION,
             lambda b, lay: _set_region(b, lay, Region.Y_OUT, lay.offsets[Region.Y_OUT] + 1)),
        case("y_over_x", KernelStatus.OVERLAP,
             lambda b, lay: _set_region(b, lay, Region.Y_OUT, lay.offsets[Region.X])),
        case("y_over_desc", KernelStatus.OVERLAP,
             lambda b, lay: _set_region(b, lay, Region.Y_OUT, lay.desc_offset)),
        case("yref_over_xref", KernelStatus.OVERLAP,
             lambda b, lay: _set_region(b, lay, Region.YREF_OUT, lay.offsets[Region.XREF_OUT] + REGION_ALIGN)),
        case("indptr0", KernelStatus.CSR, lambda b, lay: _csr_i32(b, lay, 0, 1)),
        case("indptr_down", KernelStatus.CSR, lambda b, lay: _csr_i32(b, lay, 2, -1)),
        case("indptr_end", KernelStatus.CSR,
             lambda b, lay: _csr_i32(b, lay, lay.header["out_dim"], lay.header["nnz_dw"] - 1)),
        case("col_big", KernelStatus.CSR,
             lambda b, lay: b.__setitem__(slice(lay.offsets[Region.DW_INDICES],
                                              lay.offsets[Region.DW_INDICES] + 2),
                                        np.frombuffer(struct.pack("<H", 19), np.uint8))),
    ]


def _check_refused(system, buf, buf_bytes, desc_offset, bit, name):
    before = buf.copy()
    st, words, _ = system.fetch_only(buf, buf_bytes, desc_offset)
    assert st == DONE | bit and words.size == 0, (name, st)
    st, left = system.commit_only(buf, buf_bytes, desc_offset, np.zeros(0, np.uint64),
                                  np.zeros(0, np.uint8))
    assert st == DONE | bit and left == 0, (name, st)
    run = system.run_buffer(buf, buf_bytes, desc_offset)
    assert (run.fetch_status, run.commit_status, run.trailer) == (DONE | bit, DONE | bit, None)
    assert np.array_equal(buf, before), f"{name}: memory changed"


def test_refused_descriptors_leave_memory_identical():
    rng = seeding.rng("test_refused_descriptors_leave_memory_identical")
    system = HlsSystemExecutor(LIM)
    _job0, clean, layout = _base_job(rng)
    for name, bit, mutate in _refusals(rng):
        buf = clean.copy()
        mutate(buf, layout)
        _check_refused(system, buf, layout.buf_bytes, layout.desc_offset, bit, name)
    # buffer declared too small for the last region; descriptor outside / misaligned
    _check_refused(system, clean.copy(), layout.buf_bytes - REGION_ALIGN, 0, KernelStatus.REGION, "short")
    _check_refused(system, clean.copy(), layout.buf_bytes, layout.buf_bytes - 64,
                   KernelStatus.REGION, "desc_beyond")
    _check_refused(system, clean.copy(), layout.buf_bytes, REGION_ALIGN // 2, KernelStatus.REGION, "desc_misaligned")
    # the unmodified descriptor still runs
    run = system.run_buffer(clean, layout.buf_bytes, layout.desc_offset)
    assert run.fetch_status == DONE and run.commit_status == DONE


def test_commit_rules_for_malformed_packets():
    """Tag mismatch, early TLAST, missing TLAST, trailer alone, drain when refused."""
    rng = seeding.rng("test_commit_rules_for_malformed_packets")
    system = HlsSystemExecutor(LIM)
    job, clean, layout = _base_job(rng)
    gold = GoldenCore(LIM).run_packet(pack_job(job))
    lasts = np.zeros(gold.size, np.uint8)
    lasts[-1] = 1
    buf = clean.copy()
    assert system.commit_only(buf, layout.buf_bytes, 0, gold, lasts) == (DONE, 0)
    good = buf.copy()
    # another job's trailer tag: the data is written, TAG tells the host to discard it
    other = gold.copy()
    other[-1] = np.uint64(int(other[-1]) ^ (1 << _TRL["tag"].lsb))  # lowest tag bit
    buf = clean.copy()
    assert system.commit_only(buf, layout.buf_bytes, 0, other, lasts) == (DONE | KernelStatus.TAG, 0)
    assert np.array_equal(buf, good)
    # TLAST early (packet cut inside Y): CORE, nothing beyond the cut is written: every
    # changed byte is a Y element that a word before the cut carried, with its good value
    row_words = words_for(job.out_dim, INT8_PER_WORD)
    y_at = layout.offsets[Region.Y_OUT]
    for cut in sorted({1, 2, 3, row_words + 1, int(rng.integers(1, job.tokens * row_words))}):
        cut_l = np.zeros(cut, np.uint8)
        cut_l[-1] = 1
        buf = clean.copy()
        st, left = system.commit_only(buf, layout.buf_bytes, 0, gold[:cut], cut_l)
        assert st & KernelStatus.CORE and left == 0, (cut, st)
        rows, rest = divmod(cut, row_words)
        delivered = rows * job.out_dim + min(rest * INT8_PER_WORD, job.out_dim)
        changed = np.flatnonzero(buf != clean)
        assert np.all((changed >= y_at) & (changed < y_at + delivered)), (cut, changed)
        assert np.array_equal(buf[changed], good[changed]), cut
    # no TLAST where the trailer belongs: CORE, drained through the late TLAST
    late = np.concatenate([gold, np.zeros(2, np.uint64)])
    late_l = np.zeros(late.size, np.uint8)
    late_l[-1] = 1
    st, left = system.commit_only(clean.copy(), layout.buf_bytes, 0, late, late_l)
    assert st == DONE | KernelStatus.CORE and left == 0
    # trailer alone (core refused): nothing written
    trailer = [0]
    _TRL["status"].put(trailer, int(CoreStatus.INDEX))
    _TRL["tag"].put(trailer, job.tag)
    refused = np.array(trailer, np.uint64)
    buf = clean.copy()
    st, _ = system.commit_only(buf, layout.buf_bytes, 0, refused, np.ones(1, np.uint8))
    assert st == DONE | KernelStatus.CORE and np.array_equal(buf, clean)
    # refused descriptor with a packet waiting: drained (through TLAST), nothing written
    buf = clean.copy()
    _set_word(buf, layout, DESC_WORD_MAGIC, 0)
    before = buf.copy()
    two = np.concatenate([gold, gold])
    two_l = np.concatenate([lasts, lasts])
    st, left = system.commit_only(buf, layout.buf_bytes, 0, two, two_l)
    assert st == DONE | KernelStatus.BAD_DESC and left == gold.size
    assert np.array_equal(buf, before)


# ---- guard pages: no access beyond buf_bytes ---------------------------------------------
def _guarded(size: int) -> tuple[mmap.mmap, np.ndarray]:
    """A uint8 array of `size` bytes (multiple of 8) that ends where a PROT_NONE page starts."""
    page = mmap.PAGESIZE
    n_pages = -(-size // page)
    mem = mmap.mmap(-1, (n_pages + 1) * page)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(base + n_pages * page, page, 0) != 0:
        raise OSError("mprotect failed")
    arr = np.frombuffer(mem, dtype=np.uint8, count=size, offset=n_pages * page - size)
    return mem, arr


def _guard_child(seed: int) -> None:
    rng = np.random.default_rng(seed)
    system = HlsSystemExecutor(LIM)
    _job0, clean, layout = _base_job(rng)
    cases = [(name, mutate) for name, _bit, mutate in _refusals(rng)] + [("valid", None)]
    for _name, mutate in cases:
        for declared in (layout.buf_bytes, layout.buf_bytes - REGION_ALIGN):
            _mem, buf = _guarded(declared)
            buf[:] = clean[:declared]
            if mutate is not None:
                mutate(buf, layout)
            system.run_buffer(buf, declared, layout.desc_offset)
    for job in _sequence(rng, n_frames=1):
        _b, lay = descriptor.layout_job(job)
        _mem, buf = _guarded(lay.buf_bytes)
        buf[:] = _b
        system.run_buffer(buf, lay.buf_bytes, lay.desc_offset)


def test_no_access_beyond_buffer_guard_page():
    rng = seeding.rng("test_no_access_beyond_buffer_guard_page")
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_guard_child, args=(int(rng.integers(1 << 31)),))
    child.start()
    child.join(120)
    assert child.exitcode == 0, f"guarded run died with exit code {child.exitcode} (-11: SIGSEGV)"


def test_layout_is_aligned_and_disjoint():
    rng = seeding.rng("test_layout_is_aligned_and_disjoint")
    for job in _sequence(rng, n_frames=1):
        _buf, lay = descriptor.layout_job(job, desc_offset=REGION_ALIGN * int(rng.integers(0, 10)))
        spans = [(lay.desc_offset, DESC_BYTES)] + [
            (off, lay.region_size(r)) for r, off in lay.offsets.items()]
        spans.sort()
        for (a, an), (b, _bn) in zip(spans, spans[1:], strict=False):
            assert a % REGION_ALIGN == 0 and a + an <= b
        assert spans[-1][0] + spans[-1][1] <= lay.buf_bytes and lay.buf_bytes % REGION_ALIGN == 0


def test_fuzzed_descriptors_match_python_validation():
    """Random corruptions of descriptor words, region offsets, CSR and buf_bytes: the C++
    fetch status equals descriptor.validate_descriptor, and a refused job leaves the
    buffer byte-identical through fetch -> core -> commit."""
    rng = seeding.rng("test_fuzzed_descriptors_match_python_validation")
    system = HlsSystemExecutor(LIM)
    seen: set[int] = set()
    for trial in range(300):
        job, clean, layout = _base_job(rng) if trial % 2 else (None, *_fresh(rng))
        buf = clean.copy()
        buf_bytes = layout.buf_bytes
        for _ in range(int(rng.integers(1, 3))):
            kind = int(rng.integers(0, 5))
            if kind == 0:  # any descriptor word, a random bit
                at = layout.desc_offset + _DESC_WORD_BYTES * int(rng.integers(0, DESC_WORDS))
                buf[at + int(rng.integers(0, _DESC_WORD_BYTES))] ^= np.uint8(1 << int(rng.integers(0, 8)))
            elif kind == 1:  # a region offset moved by a small amount or to a random place
                r = Region(int(rng.integers(0, len(Region))))
                target = (int(rng.integers(0, buf_bytes + 64)) if rng.random() < 0.5 else
                          layout.offsets.get(r, 0) + int(rng.integers(-16, 17)))
                _set_region(buf, layout, r, max(target, 0))
            elif kind == 2 and Region.DW_INDPTR in layout.offsets:  # one CSR value
                k = int(rng.integers(0, layout.header["out_dim"] + 1))
                _csr_i32(buf, layout, k, int(rng.integers(-2, layout.header["nnz_dw"] + 3)))
            elif kind == 3:
                buf_bytes = int(rng.integers(layout.buf_bytes - 24, layout.buf_bytes + 1))
            else:  # a header field
                name = _FUZZED_FIELDS[int(rng.integers(0, len(_FUZZED_FIELDS)))]
                _set_header_field(buf, layout, name,
                                  int(rng.integers(0, 1 << min(_HDR[name].width, 7))))
        want = descriptor.validate_descriptor(buf, buf_bytes, layout.desc_offset, LIM)
        st, words, _ = system.fetch_only(buf, buf_bytes, layout.desc_offset)
        assert int(st) == DONE | want, (trial, st, KernelStatus(want))
        seen.add(want)
        if want:
            before = buf.copy()
            assert words.size == 0
            run = system.run_buffer(buf, buf_bytes, layout.desc_offset)
            assert int(run.commit_status) == DONE | want and np.array_equal(buf, before)
    print("verdicts", sorted(seen))
    assert len(seen) >= 5, seen  # OK plus several refusal kinds were exercised


def _fresh(rng):
    """A TASK job with EMIT_REF and dW at a non-zero descriptor offset (other regions)."""
    dims = (int(rng.integers(1, 9)), int(rng.integers(1, 30)), int(rng.integers(2, 20)))
    w = rng.integers(-128, 128, dims[2:0:-1]).astype(np.int8)
    refs = (rng.integers(-128, 128, dims[:2]).astype(np.int8),
            rng.integers(-999, 999, (dims[0], dims[2])).astype(np.int32))
    job = _job(rng, Mode.TASK, JobFlag.LOAD_W | JobFlag.LOAD_REF | JobFlag.EMIT_REF, dims, w,
               dw_density=0.4, refs=refs)
    return descriptor.layout_job(job, desc_offset=REGION_ALIGN * int(rng.integers(1, 6)), fill=0x77)
