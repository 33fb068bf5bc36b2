"""Wide stream beats in the HLS core (issue 18): B words per beat, bit-exact with GoldenCore
for B = 1, 2, 4, 8 in every mode and flag combination, with dW, resident state, refusals
counted in beats and non-zero beat padding; the emulator packs at its library's B."""

from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from itertools import product

import numpy as np
import pytest
from deltamtl.contract.encoding import (
    join_sections,
    pack_job,
    packet_sections,
    trailer_status,
    unpack_result,
    with_header_field,
)
from deltamtl.contract.formats import VALID_FLAGS, JobFlag, Mode, choose_requant
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import CsrDelta, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import CoreStatus, Section
from deltamtl.contract.vectors import generate_random_vectors, write_vectors
from deltamtl.hls import emulator
from deltamtl.hls.build import build
from deltamtl.hls.emulator import HlsCoreExecutor, HlsSystemExecutor

from tests.helpers import seeding

BEATS = (1, 2, 4, 8)


def _limits(b: int) -> CoreLimits:
    # 21 tokens and 50 inputs: no B divides them (partial row blocks, partial X words); 36
    # outputs: partial Y / YREF beats. lanes = 8B (the contract's minimum) and T = max(4, B).
    # B = 1 is test_hls_scaled's T = 4 build (the same library).
    return CoreLimits(max_tokens=21, max_in=50, max_out=36, max_nnz_dw=400, lanes=max(8, 8 * b),
                      max_weights=50 * 36, token_rows=max(4, b), beat_words=b)


STORE_DELAY = ("-DDMTL_STORE_DELAY=5",)


@pytest.fixture(scope="module", autouse=True)
def _prebuilt():
    """This module's g++ builds side by side (each is cached and locked on its own): on a
    cold build folder they are most of its time."""
    jobs = [("emu", _limits(b), ()) for b in BEATS] + [("tb_core", _limits(4), STORE_DELAY)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda j: build(*j), jobs))


def _job(rng, mode: Mode, flags: JobFlag, p: int, i: int, o: int, dw: bool,
         tag: int = 7) -> SiteJob:
    w = rng.integers(-128, 128, (o, i)).astype(np.int8)
    delta = None
    if dw:  # a few entries, at least one; the merged weight stays in int8
        d = np.where(rng.random((o, i)) < 0.1, rng.integers(-9, 10, (o, i)), 0)
        d[int(rng.integers(o)), int(rng.integers(i))] = 3
        delta = CsrDelta.from_dense((np.clip(w.astype(int) + d, -128, 127) - w).astype(np.int8))
        if delta.nnz == 0:
            delta = None
    mult, shift = choose_requant(rng.uniform(0.2, 2.0, o) * 127 / (128 * 128 * np.sqrt(i)))
    refs = mode != Mode.DENSE and flags & JobFlag.LOAD_REF
    return SiteJob(
        mode, flags, int(rng.integers(1, 6)), rng.integers(-128, 128, (p, i)).astype(np.int8),
        mult, shift, o, w=w if flags & JobFlag.LOAD_W else None, dw=delta,
        bias=rng.integers(-5000, 5000, o).astype(np.int32) if mode != Mode.TEMPORAL else None,
        x_ref=rng.integers(-128, 128, (p, i)).astype(np.int8) if refs else None,
        y_ref=rng.integers(-(1 << 20), 1 << 20, (p, o)).astype(np.int32) if refs else None,
        tag=tag)


def _keyframe(rng, golden: GoldenCore, core: HlsCoreExecutor, p: int, i: int, o: int) -> None:
    """A DENSE LOAD_W job on both cores: weights and references of these dims resident."""
    words = pack_job(_job(rng, Mode.DENSE, JobFlag.LOAD_W, p, i, o, False), golden.limits.beat_words)
    out = golden.run_packet(words)
    assert trailer_status(out, golden.limits.beat_words) == CoreStatus.OK
    assert np.array_equal(core.run_packet(words), out)


@pytest.mark.parametrize("b", BEATS)
def test_random_vectors_bit_exact(b):
    """Every generated class (resets, refusals, dW, LOAD_REF/EMIT_REF, max dims) in beats."""
    lim = _limits(b)
    rng = seeding.rng("test_hls_beats random", b)
    records = generate_random_vectors(lim, n_sequences=10, seed=int(rng.integers(1 << 31)))
    core = HlsCoreExecutor(lim)
    classes = set()
    for k, rec in enumerate(records):
        if rec.is_reset:
            core.reset()
            continue
        assert rec.words_in.size % b == 0
        assert np.array_equal(core.run_packet(rec.words_in), rec.words_out), (k, rec.cls)
        classes.add(rec.cls)
    assert {"dense", "temporal", "task", "sub_temporal_patch", "max_dims", "refused_length",
            "refused_index"} <= classes


@pytest.mark.parametrize("b", BEATS)
@pytest.mark.parametrize("p", [1, 13, 21])
def test_every_mode_and_flag(b, p):
    """DENSE / TEMPORAL / TASK x every flag set x with and without dW, on resident state:
    the output packet (y, refs, nnz_act, tag, padding) and run_job as the golden's."""
    lim = _limits(b)
    rng = seeding.rng("test_hls_beats modes", b, p)
    i, o = 50, int(rng.integers(17, 37))
    golden, core = GoldenCore(lim), HlsCoreExecutor(lim)
    core.reset()
    _keyframe(rng, golden, core, p, i, o)
    for mode, flags, dw in product(Mode, [JobFlag(f) for f in range(VALID_FLAGS + 1)], (False, True)):
        job = _job(rng, mode, flags, p, i, o, dw)
        words = pack_job(job, b)
        want = golden.run_packet(words)
        assert trailer_status(want, b) == CoreStatus.OK, (mode, flags)
        assert np.array_equal(core.run_packet(words), want), (mode, flags, dw)
    # run_job packs at the library's B and unpacks the same way
    job = _job(rng, Mode.TASK, JobFlag.LOAD_REF | JobFlag.EMIT_REF, p, i, o, True)
    want = unpack_result(golden.run_packet(pack_job(job, b)), job, b)
    got = core.run_job(job)
    assert (got.status, got.tag, got.nnz_act) == (want.status, want.tag, want.nnz_act)
    for name in ("y", "x_ref", "y_ref"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


@pytest.mark.parametrize("b", BEATS)
def test_refusals_in_beats(b):
    """LENGTH a beat early / late / the header beat alone, header refusals, INDEX, NO_STATE:
    the trailer beat alone, as the golden's, and the resident state still serves."""
    lim = _limits(b)
    rng = seeding.rng("test_hls_beats refusals", b)
    p, i, o = 9, 23, 30
    golden, core = GoldenCore(lim), HlsCoreExecutor(lim)
    core.reset()

    def same(words, status, tag=99):
        want = golden.run_packet(np.asarray(words, np.uint64))
        assert trailer_status(want, b) == status and want.size == b, status
        got = core.run_packet(np.asarray(words, np.uint64))
        assert [int(v) for v in got] == [int(v) for v in want], status

    same(pack_job(_job(rng, Mode.TASK, JobFlag.NONE, p, i, o, False, tag=99), b), CoreStatus.NO_STATE)
    _keyframe(rng, golden, core, p, i, o)
    job = _job(rng, Mode.TASK, JobFlag.LOAD_W | JobFlag.LOAD_REF | JobFlag.EMIT_REF, p, i, o, True,
               tag=99)
    words = pack_job(job, b)
    same(words[:-b], CoreStatus.LENGTH)  # TLAST a beat early
    same(np.concatenate([words, np.full(b, 5, np.uint64)]), CoreStatus.LENGTH)  # a beat late
    if b == 1:
        same(words[:1], CoreStatus.LENGTH, tag=0)  # shorter than the header
    else:
        same(words[:b], CoreStatus.LENGTH)  # the header beat alone: the tag is known
    same(with_header_field(words, "mode", 3), CoreStatus.BAD_HEADER)
    same(with_header_field(words, "tokens", lim.max_tokens + 1), CoreStatus.DIMS)
    same(with_header_field(words, "nnz_dw", lim.max_nnz_dw + 1), CoreStatus.NNZ)
    sections = packet_sections(words, b)
    sections[Section.DW][-1] |= np.uint64(0xFFFF)  # the last entry's column past I
    same(join_sections(sections, b), CoreStatus.INDEX)
    if b > 1:
        with pytest.raises(ValueError, match="whole beats"):
            core.run_packet(words[:-1])
    # nothing above changed the resident state
    assert np.array_equal(core.run_packet(words), golden.run_packet(words))


def _padding(words: np.ndarray, b: int) -> np.ndarray:
    """True on the beat padding words of an input packet: the packet re-laid out with every
    section's words (the header's excepted) all ones leaves zeros only there."""
    ones = {s: (v if s == Section.HEADER else np.full(v.size, ~np.uint64(0), np.uint64))
            for s, v in packet_sections(words, b).items()}
    pad = join_sections(ones, b) == 0
    pad[:2] = False  # the header words themselves
    return pad


@pytest.mark.parametrize("b", (2, 4, 8))
def test_non_zero_padding_is_ignored(b):
    """Padding words full of bits (row blocks past P / O, words past a row, dW entries past
    nnz_dw that would be INDEX errors) change nothing."""
    lim = _limits(b)
    rng = seeding.rng("test_hls_beats padding", b)
    p, i, o = 13, 50, 27
    golden, core = GoldenCore(lim), HlsCoreExecutor(lim)
    core.reset()
    _keyframe(rng, golden, core, p, i, o)
    seen = 0
    for mode, flags, dw in product(Mode, [JobFlag(f) for f in range(VALID_FLAGS + 1)], (False, True)):
        words = pack_job(_job(rng, mode, flags, p, i, o, dw), b)
        pad = _padding(words, b)
        assert not words[pad].any()
        seen += int(pad.sum())
        noisy = words.copy()
        noisy[pad] = rng.integers(1, 1 << 63, int(pad.sum()), dtype=np.int64).astype(np.uint64) | (
            np.uint64(0xFFFFFFFF))
        want = golden.run_packet(words)
        assert np.array_equal(core.run_packet(noisy), want), (mode, flags, dw)
    assert seen > 0


def test_emulator_guards_the_beat_width(monkeypatch):
    """The system path is B = 1 only; a library built for another B is refused."""
    with pytest.raises(ValueError, match="B = 1 only"):
        HlsSystemExecutor(_limits(2))
    one = emulator._library(_limits(1)).path  # a B = 1 library asked to serve B = 2
    monkeypatch.setattr(emulator, "build", lambda _target, _limits: one)
    with pytest.raises(RuntimeError, match="compiled limits"):
        emulator._Library(replace(_limits(1), beat_words=2, lanes=16))


def test_store_delay_at_four_words_a_beat(tmp_path):
    """The wide loaders keep the dependence story of docs/hls.md: with every RAM store
    visible only FWD_DEPTH + 1 iterations later (dmtl_ram.h's shim), a B = 4 build is still
    bit-exact on the random set (load_yref writes each (p, o) once, dW is forwarded)."""
    lim = _limits(4)
    path = tmp_path / "beats.dmtv"
    write_vectors(path, generate_random_vectors(lim, n_sequences=8, seed=11), lim)
    exe = build("tb_core", lim, extra_flags=STORE_DELAY)
    proc = subprocess.run([str(exe), str(path)], capture_output=True, text=True, check=False)
    found = re.search(r"^RESULT (\d+) (\d+)$", proc.stdout, re.MULTILINE)
    assert proc.returncode == 0 and found and found.group(1) == found.group(2), proc.stdout + proc.stderr
    # tb_core compares all eight limits: a file that differs in beat_words alone is refused
    other = tmp_path / "other_b.dmtv"
    write_vectors(other, [], replace(lim, beat_words=2))
    proc = subprocess.run([str(exe), str(other)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "generated for limits" in proc.stderr, proc.stderr
