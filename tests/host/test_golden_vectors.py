"""Model test vectors: the dumped records hold what an independent computation says, replay
bit-exactly on the C++ core (a second implementation, not the golden that wrote them) and
cover every mode."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from deltamtl.contract.encoding import parse_header, trailer_status, unpack_job, unpack_result
from deltamtl.contract.formats import JobFlag, Mode, requantize
from deltamtl.contract.vectors import read_vectors
from deltamtl.host.model_vectors import main, model_vectors
from deltamtl.model.export.quantized_model import ReusePolicy
from deltamtl.model.quant.assemble import random_multitask
from deltamtl.model.quant.quantizer import Quantizer

from tests.helpers import seeding

pytestmark = pytest.mark.quant  # make test-quant

torch.set_num_threads(1)


def test_model_vectors_replay_and_cover_modes(tmp_path: Path) -> None:
    seed = seeding.seed_for("test_model_vectors_replay_and_cover_modes", bits=20)
    q = Quantizer(random_multitask(seed))
    q.calibrate([torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed))])
    qm = q.to_quantized()
    qm.policy = ReusePolicy(depth=qm.depth, keyframe_interval=2, boundaries={"depth": 0, "edges": -1},
                            thresholds={t: [2] * qm.depth for t in qm.tasks})
    frames = np.random.default_rng(seed).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    limits, records, runner = model_vectors(qm, frames)
    assert records[0].is_reset and all(r.cls == "model" for r in records[1:])
    assert len(records) - 1 == len(runner.records)
    from deltamtl.contract.vectors import write_vectors

    write_vectors(tmp_path / "m.dmtv", records, limits)
    limits2, back = read_vectors(tmp_path / "m.dmtv")
    assert limits2 == limits and len(back) == len(records)
    seen = set()
    w_bank = None  # the resident weight bank, as the packets load it
    checked = 0
    for rec in back:
        if rec.is_reset:
            w_bank = None
            continue
        hdr = parse_header(rec.words_in)
        mode, flags = Mode(hdr["mode"]), JobFlag(hdr["flags"])
        seen.add((mode, bool(flags & JobFlag.LOAD_REF)))
        assert trailer_status(rec.words_out) == 0, "a model job was refused"
        job = unpack_job(rec.words_in)
        if flags & JobFlag.LOAD_W:
            w_bank = job.w
        checked += _check_independently(job, unpack_result(rec.words_out, job), w_bank)
    assert {(Mode.DENSE, False), (Mode.TEMPORAL, True), (Mode.TASK, False)} <= seen
    assert checked >= 10, "too few records had everything needed for the independent check"
    _replay_on_cpp_core(back, limits2)


def _merged(w: np.ndarray, job) -> np.ndarray:
    """W_b + dW in the int8 bank (a sum outside int8 wraps, docs/hls.md)."""
    dw = job.dw.to_dense(job.out_dim, job.in_dim) if job.dw is not None else 0
    return ((w.astype(np.int64) + dw + 128) % 256 - 128).astype(np.int64)


def _wrap32(a: np.ndarray) -> np.ndarray:
    return ((a + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int64)


def _check_independently(job, res, w_bank) -> int:
    """DENSE: y = requant(x (W + dW)^T + b). TEMPORAL with its references in the packet:
    the sent delta keeps |x - x_ref| >= th, y_ref' = y_ref + d (W + dW)^T. Plain int64
    numpy, none of the golden core's code; requantize is the contract's rounding (held to
    exact rational rounding in tests/contract/test_contract.py). Returns 1 if checked."""
    if w_bank is None or job.mode == Mode.TASK or (
            job.mode == Mode.TEMPORAL and not job.flags & JobFlag.LOAD_REF):
        return 0  # TASK and resident-reference jobs need the base's state: the C++ replay covers them
    w = _merged(w_bank, job)
    x = job.x.astype(np.int64)
    if job.mode == Mode.DENSE:
        acc = _wrap32(x @ w.T + job.bias.astype(np.int64))
        x_sent = x
    else:
        d = x - job.x_ref.astype(np.int64)
        d = np.where(np.abs(d) >= job.th, d, 0)
        x_sent = job.x_ref.astype(np.int64) + d
        acc = _wrap32(job.y_ref.astype(np.int64) + d @ w.T)
    assert np.array_equal(res.y, requantize(acc, job.req_mult, job.req_shift)), job.mode
    if job.flags & JobFlag.EMIT_REF:
        assert np.array_equal(res.y_ref, acc) and np.array_equal(res.x_ref, x_sent), job.mode
    return 1


def _replay_on_cpp_core(records, limits) -> None:
    if shutil.which("g++") is None:
        pytest.skip("g++ not installed: the C++ replay of the model vectors cannot run")
    from deltamtl.hls.emulator import HlsCoreExecutor

    core = HlsCoreExecutor(limits)
    for k, rec in enumerate(records):
        if rec.is_reset:
            core.reset()
            continue
        np.testing.assert_array_equal(core.run_packet(rec.words_in), rec.words_out,
                                      err_msg=f"record {k}")


def test_cli_random_model(tmp_path: Path, capsys) -> None:
    assert main(["--random", "5", "--frames", "2", "--key-interval", "2", "--out", str(tmp_path / "r.dmtv")]) == 0
    assert "site jobs of 2 frames" in capsys.readouterr().out
    _, recs = read_vectors(tmp_path / "r.dmtv")
    assert len(recs) > 30
