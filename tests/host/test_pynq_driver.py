"""The pynq backend on the virtual ZCU104 (real C++ kernels behind a pynq.Device), the rtl
backend, and the faults: golden == emulated == virtual bit for bit on a 60-frame synthetic
clip and on scikit-image's animated GIF; rtl on 2 frames; register accesses per frame;
a hung kernel, a corrupted status word, malformed descriptors and chains, bad buffers.

Figures are printed (pytest -s) and written nowhere in the tree.
"""

from __future__ import annotations

import os
import struct
import time

import numpy as np
import pytest
import torch
from deltamtl.contract import chain as ch
from deltamtl.contract.descriptor import DESC_WORD_REGIONS, Region
from deltamtl.contract.registers import KernelStatus
from deltamtl.host.backends import make_executor
from deltamtl.host.runner import GoldenRunner
from deltamtl.model.data.synthetic import render_clip
from deltamtl.model.export.quantized_model import ReusePolicy
from deltamtl.model.quant.assemble import random_multitask
from deltamtl.model.quant.quantizer import Quantizer
from deltamtl.model.tasks import EMBED

from tests.helpers.seeding import SEED

pytest.importorskip("pynq", reason="pynq not installed (make setup installs pynq 4.0.0)")

SIZE = 16  # the random model's input (16x16 frames)
DONE = int(KernelStatus.DONE)


def _gif_frames() -> np.ndarray:
    """scikit-image's animated GIF, every frame resized to the model's input."""
    import imageio.v3 as iio
    import skimage.data
    from PIL import Image

    path = os.path.join(os.path.dirname(skimage.data.__file__), "no_time_for_that_tiny.gif")
    frames = iio.imread(path)[..., :3]
    return np.stack([np.asarray(Image.fromarray(f).resize((SIZE, SIZE), Image.BILINEAR))
                     for f in frames]).astype(np.uint8)


@pytest.fixture(scope="module")
def setup():
    """A random 4-task model calibrated on both clips, thresholds above 1 and keyframes
    every 5 frames, so TEMPORAL and TASK jobs with real deltas run."""
    clip = render_clip(seed=SEED % 1000, n_frames=60, height=SIZE, width=SIZE).rgb
    gif = _gif_frames()
    q = Quantizer(random_multitask(SEED % 10_000))
    calib = np.concatenate([clip[::6], gif[::4]])
    q.calibrate([torch.from_numpy(calib.transpose(0, 3, 1, 2) / 255.0).float()])
    qm = q.to_quantized()
    qm.policy = ReusePolicy(depth=qm.depth, keyframe_interval=5,
                            thresholds={t: [4] * qm.depth for t in qm.tasks})
    return qm, {"synthetic": clip, "gif": gif}


def _mismatches(ref, got) -> int:
    return sum(not np.array_equal(a[t], b[t]) for a, b in zip(ref, got, strict=True) for t in a)


@pytest.mark.parametrize("clip", ["synthetic", "gif"])
def test_golden_emulated_virtual_bit_identical(setup, clip: str) -> None:
    qm, clips = setup
    frames = clips[clip]
    runs = {}
    for name in ("golden", "emulated", "virtual"):
        start = time.monotonic()
        runner = GoldenRunner(qm, make_executor(name, qm, timeout_s=5.0))
        runs[name] = (runner.run_clip(frames), runner, time.monotonic() - start)
    ref = runs["golden"][0]
    assert len(ref) == len(frames) and set(ref[0]) == set(qm.tasks)
    for name, (outs, runner, secs) in runs.items():
        bad = _mismatches(ref, outs)
        print(f"\n{clip}: {name}: {len(frames)} frames, {len(runner.records)} jobs, "
              f"{bad} mismatching task outputs, {secs:.1f} s")
        assert bad == 0, name
        assert not runner.faults, runner.faults
        # the accounting too: every job's non-zero activations and MACs as the golden's
        # (the chain's status entry carries the trailer's nnz_act)
        acct = [(r.task, r.layer, r.site, r.mode, r.nnz_act, r.macs) for r in runner.records]
        assert acct == [(r.task, r.layer, r.site, r.mode, r.nnz_act, r.macs)
                        for r in runs["golden"][1].records], name
    dev = runs["virtual"][1].executor.device
    c = dev.counters
    n = len(frames)
    print(f"{clip}: virtual: {c.reg_accesses} register accesses ({c.reg_reads} reads, "
          f"{c.reg_writes} writes) = {c.reg_accesses / n:.2f} per frame; flushed "
          f"{c.flushed / n / 1024:.0f} KiB, invalidated {c.invalidated / n / 1024:.0f} KiB per frame")
    assert c.jobs == len(runs["virtual"][1].records)
    assert c.resets == 0


def test_register_accesses_per_frame(setup) -> None:
    """The first frame writes the six 32-bit argument words of each kernel; every frame
    then costs two starts and, at its end, one ap_done and one status read per kernel."""
    qm, clips = setup
    runner = GoldenRunner(qm, make_executor("virtual", qm))
    c = runner.executor.device.counters
    per_frame = []
    for frame in clips["synthetic"][:7]:
        before = c.reg_accesses
        runner.run_frame(frame)
        per_frame.append(c.reg_accesses - before)
    print(f"\nregister accesses per frame: {per_frame} (jobs per frame: "
          f"{len(runner.records) // 7})")
    assert per_frame[0] == 12 + 2 + 4
    assert all(n == 6 for n in per_frame[1:]), per_frame
    assert max(per_frame[1:]) <= 10


def test_rtl_backend_fails_fast_when_the_simulator_dies(setup, monkeypatch) -> None:
    """A bench that ends before opening its pipes (here: told to serve a file of maxima
    that does not exist) is an error naming the log, not a hang on the FIFO."""
    from deltamtl.host import rtl_backend
    from deltamtl.rtl import sim

    real = sim.run_cocotb

    def broken(build, testcases, env=None, **kw):
        return real(build, testcases, env={**(env or {}), "DMTV_PATH": "/nonexistent.dmtv"}, **kw)

    monkeypatch.setattr(rtl_backend.sim, "run_cocotb", broken)
    qm, _clips = setup
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"(?s)simulator ended before opening req.*nonexistent.*log: "):
        rtl_backend.RtlCore(qm.core_limits())
    assert time.monotonic() - t0 < 120


def test_rtl_backend_two_frames(setup) -> None:
    qm, clips = setup
    frames = clips["synthetic"][:2]
    ref = GoldenRunner(qm).run_clip(frames)
    start = time.monotonic()
    executor = make_executor("rtl", qm)
    try:
        runner = GoldenRunner(qm, executor)
        got = runner.run_clip(frames)
    finally:
        executor.close()
    bad = _mismatches(ref, got)
    print(f"\nrtl: 2 frames, {len(runner.records)} jobs, {bad} mismatching task outputs, "
          f"{time.monotonic() - start:.1f} s (with the Verilator build when not cached)")
    assert bad == 0


# ---------------------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------------------
def _fresh_from(qm, frames, start: int):
    """A fresh golden run whose first frame is ``start`` (a keyframe), keeping the video's
    keyframe schedule afterwards."""
    runner = GoldenRunner(qm)
    out = [runner.run_frame(frames[start])]
    for i in range(start + 1, len(frames)):
        out.append(runner.run_frame(frames[i], keyframe=qm.policy.is_keyframe(i)))
    return out


def test_hung_kernel_times_out_resets_and_recovers_from_a_keyframe(setup) -> None:
    qm, clips = setup
    frames = clips["synthetic"][:9]
    runner = GoldenRunner(qm, make_executor("virtual", qm, timeout_s=0.2))
    dev = runner.executor.device
    outs = []
    for i, frame in enumerate(frames):
        if i == 3:  # frame 3 is not a scheduled keyframe: the recovery forces one
            dev.hang_after = 7
        outs.append(runner.run_frame(frame))
    assert len(runner.faults) == 1 and runner.faults[0][0] == 3
    assert "no status" in runner.faults[0][1] and "kernels reset" in runner.faults[0][1]
    assert dev.counters.resets >= 1
    fresh = _fresh_from(qm, frames, 3)
    assert _mismatches(fresh, outs[3:]) == 0
    golden = GoldenRunner(qm).run_clip(frames[:3])
    assert _mismatches(golden, outs[:3]) == 0


@pytest.mark.parametrize("mask,words", [(0x8000_0040, "corrupted status word"),
                                        (0x0000_0040, "status <KernelStatus.DONE|CORE")])
def test_bad_status_word_names_the_job_and_recovers(setup, mask: int, words: str) -> None:
    qm, clips = setup
    frames = clips["synthetic"][:4]
    runner = GoldenRunner(qm, make_executor("virtual", qm))
    dev = runner.executor.device
    outs = [runner.run_frame(frames[0])]
    dev.corrupt_status, dev.corrupt_mask = 5, mask
    plan = runner.frame_plan(False)
    outs += [runner.run_frame(f) for f in frames[1:]]
    (frame, message), = runner.faults
    pj = plan[5]
    assert frame == 1 and words in message
    assert f"job 5 ({pj.task}, layer {pj.layer}, {pj.site}" in message
    assert _mismatches(_fresh_from(qm, frames, 1), outs[1:]) == 0


def _guards_unchanged(ex, view: np.ndarray) -> bool:
    return all(np.all(view[at: at + size] == 0xA5) for at, size in ex.guards)


def test_descriptor_outside_its_buffer_is_refused_by_the_host_before_any_start(setup) -> None:
    qm, clips = setup
    runner = GoldenRunner(qm, make_executor("virtual", qm))
    ex, dev = runner.executor, runner.executor.device
    slot = ex.programs[True].slots[3]
    at = slot.layout.desc_offset + 4 * (DESC_WORD_REGIONS + 2 * int(Region.X))
    ex.arena[at: at + 8] = np.frombuffer(struct.pack("<Q", ex.buf_bytes), np.uint8)
    writes, device_before = dev.counters.reg_writes, dev.device_view(ex.arena.device_address).copy()
    with pytest.raises(ValueError, match=r"job 3 \(.*layer .*\): descriptor refused by the host: "
                                         r"<KernelStatus.REGION"):
        runner.run_frame(clips["synthetic"][0])
    assert dev.counters.reg_writes == writes  # no argument, no start
    assert np.array_equal(dev.device_view(ex.arena.device_address), device_before)
    assert _guards_unchanged(ex, np.asarray(ex.arena))


def test_kernels_refuse_bad_descriptors_and_chains_leaving_memory_and_guards(setup) -> None:
    """Past the host's checks (registers written directly), fetch and commit refuse on
    their own: the device's DDR, guard bytes included, stays byte-identical."""
    qm, clips = setup
    runner = GoldenRunner(qm, make_executor("virtual", qm))
    ex, dev = runner.executor, runner.executor.device
    runner.run_frame(clips["synthetic"][0])  # a frame in DDR, the chain of keyframes in place
    arena = ex.arena
    chain = ex.chain
    slot = ex.programs[True].slots[2]
    cases = []
    # a job descriptor whose X region lies beyond buf_bytes
    desc = slot.layout.desc_offset
    x_word = desc + 4 * (DESC_WORD_REGIONS + 2 * int(Region.X))
    cases.append(("descriptor X beyond buffer", desc, x_word, ex.buf_bytes, int(KernelStatus.REGION)))
    cases.append(("chain link beyond buffer", chain.header, chain.links[0].offset, ex.buf_bytes + 64,
                  int(KernelStatus.CHAIN_LINK)))
    cases.append(("chain cycle", chain.header, chain.links[1].offset, chain.links[0].offset,
                  int(KernelStatus.CHAIN_CYCLE)))
    for name, offset, word_at, value, bit in cases:
        saved = np.asarray(arena[word_at: word_at + 8]).copy()
        arena[word_at: word_at + 8] = np.frombuffer(struct.pack("<Q", value), np.uint8)
        arena[word_at: word_at + 8].flush()
        before = dev.device_view(arena.device_address).copy()
        for ip in (ex.fetch, ex.commit):
            ip.set_args(arena.device_address, ex.buf_bytes, offset)
        ex.commit.start()
        ex.fetch.start()
        assert ex.fetch.done() and ex.commit.done(), name
        assert (int(ex.fetch.status()), int(ex.commit.status())) == (DONE | bit, DONE | bit), name
        after = dev.device_view(arena.device_address)
        assert np.array_equal(after, before), name
        assert _guards_unchanged(ex, after), name
        arena[word_at: word_at + 8] = saved
        arena[word_at: word_at + 8].flush()
    assert ch.validate_chain(np.asarray(arena), ex.buf_bytes, chain.header)[0] == 0
    ex._args_written = False  # the registers now point elsewhere: the next frame rewrites them
    out = runner.run_frame(clips["synthetic"][1])
    ref = GoldenRunner(qm).run_clip(clips["synthetic"][:2])[1]
    assert all(np.array_equal(out[t], ref[t]) for t in ref)


def test_buffers_of_the_wrong_kind_size_or_dtype_are_refused(setup) -> None:
    import pynq

    qm, clips = setup
    runner = GoldenRunner(qm, make_executor("virtual", qm))
    ex = runner.executor
    with pytest.raises(TypeError, match="pynq.allocate buffer"):
        ex.check_buffer(np.zeros(ex.buf_bytes, np.uint8), ex.buf_bytes)
    with pytest.raises(TypeError, match="uint16.*1-D uint8"):
        ex.check_buffer(pynq.allocate((ex.buf_bytes,), np.uint16, target=ex.device), ex.buf_bytes)
    with pytest.raises(ValueError, match="the buffer plan needs"):
        ex.check_buffer(pynq.allocate((64,), np.uint8, target=ex.device), ex.buf_bytes)
    with pytest.raises(ValueError, match="cacheable"):
        pynq.allocate((64,), np.uint8, target=ex.device, cacheable=False)
    # a job whose input is not int8 (or not the chain's shape) is refused before its doorbell
    ex.begin_frame(True)
    sp = qm.site(-1, EMBED)
    job = runner._job(sp, qm.base, *runner._plan(sp, True)[0][1:],
                      np.zeros((qm.tokens, sp.in_dim), np.float32), tag=0)
    with pytest.raises(TypeError, match="x is float32, the contract says int8"):
        ex.run_job(job)
    job.x = np.zeros((qm.tokens + 1, sp.in_dim), np.int8)
    ex.begin_frame(True)
    with pytest.raises(ValueError, match="chain's slot is"):
        ex.run_job(job)


# ---------------------------------------------------------------------------------------
# the board (skipped here)
# ---------------------------------------------------------------------------------------
BITFILE = os.environ.get("DELTAMTL_BITFILE", "")
ON_BOARD = os.path.isdir("/sys/class/fpga_manager") and os.path.exists(BITFILE)
BOARD_REASON = ("needs a ZCU104 running PYNQ and DELTAMTL_BITFILE naming the deltamtl_<impl>.bit "
                "(its .hwh beside it)")


@pytest.mark.board
@pytest.mark.skipif(not ON_BOARD, reason=BOARD_REASON)
def test_board_matches_golden(setup) -> None:
    """On the board: the pynq backend equals the golden on both clips, no fault; prints the
    time per clip."""
    qm, clips = setup
    for name, frames in clips.items():
        ref = GoldenRunner(qm).run_clip(frames)
        runner = GoldenRunner(qm, make_executor("pynq", qm, bitfile=BITFILE))
        start = time.monotonic()
        got = runner.run_clip(frames)
        print(f"\nboard {name}: {len(frames)} frames in {time.monotonic() - start:.2f} s")
        assert _mismatches(ref, got) == 0 and not runner.faults


@pytest.mark.board
@pytest.mark.skipif(not ON_BOARD, reason=BOARD_REASON)
def test_board_recovery_line_resets_the_kernels(setup) -> None:
    """On the board: a chain left waiting on its doorbell is abandoned, the GPIO pulse
    brings the kernels back, and the next frame (a keyframe) equals a fresh run."""
    qm, clips = setup
    runner = GoldenRunner(qm, make_executor("pynq", qm, bitfile=BITFILE, timeout_s=0.5))
    ex = runner.executor
    ex.begin_frame(True)  # started, never rung: fetch waits on job 0's doorbell
    ex.recover()
    runner.reset()
    out = runner.run_frame(clips["synthetic"][0])
    ref = GoldenRunner(qm).run_frame(clips["synthetic"][0])
    assert all(np.array_equal(out[t], ref[t]) for t in ref)

