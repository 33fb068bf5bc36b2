"""The .dmtv test-vector format and the random generator."""

from pathlib import Path

import numpy as np
import pytest
from deltamtl.contract.encoding import trailer_status, unpack_job, unpack_result
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import CoreStatus
from deltamtl.contract.vectors import (
    CLASSES,
    Record,
    generate_random_vectors,
    read_vectors,
    write_vectors,
)

from tests.helpers import seeding

LIMITS = CoreLimits(max_tokens=16, max_in=48, max_out=48, max_nnz_dw=48 * 48, lanes=8)


def test_round_trip_and_replay(tmp_path: Path) -> None:
    seed = seeding.seed_for("test_round_trip_and_replay")
    records = generate_random_vectors(LIMITS, 12, seed=seed)
    path = tmp_path / "v.dmtv"
    write_vectors(path, records, LIMITS)
    limits, back = read_vectors(path)
    assert limits == LIMITS and len(back) == len(records)
    core = GoldenCore(limits)
    for rec in back:  # replaying on a fresh core reproduces every expected packet
        if rec.is_reset:
            core.reset()
            continue
        assert np.array_equal(core.run_packet(rec.words_in), rec.words_out), rec.cls


def test_generator_covers_every_class_and_refusal() -> None:
    records = generate_random_vectors(LIMITS, 12, seed=3)
    seen = {r.cls for r in records}
    assert seen >= set(CLASSES) - {"model"}
    statuses = {r.cls: trailer_status(r.words_out) for r in records if not r.is_reset}
    assert statuses["refused_dims"] == CoreStatus.DIMS
    assert statuses["refused_index"] == CoreStatus.INDEX
    assert statuses["refused_no_state"] == CoreStatus.NO_STATE
    assert statuses["dense"] == 0
    # saturation vectors really saturate
    sat = [r for r in records if r.cls == "saturation"]
    ys = np.concatenate([
        unpack_result(r.words_out, unpack_job(r.words_in)).y.ravel() for r in sat])
    assert np.mean((ys == 127) | (ys == -128)) > 0.3


@pytest.mark.parametrize("damage", ["magic", "version", "truncate", "trailing", "class"])
def test_reader_rejects_damaged_files(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "v.dmtv"
    rec = Record("dense", np.arange(5, dtype=np.uint64), np.arange(2, dtype=np.uint64))
    write_vectors(path, [rec], LIMITS)
    data = bytearray(path.read_bytes())
    if damage == "magic":
        data[0:4] = b"XXXX"
    elif damage == "version":
        data[4] = 99
    elif damage == "truncate":
        data = data[:-3]
    elif damage == "trailing":
        data += b"\0" * 8
    else:
        data[32] = 200
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=str(path.name)):
        read_vectors(path)


def test_generator_respects_a_small_weight_bank() -> None:
    limits = CoreLimits(max_tokens=16, max_in=48, max_out=48, max_nnz_dw=500, lanes=4,
                        max_weights=100)
    seed = seeding.seed_for("test_generator_respects_a_small_weight_bank")
    records = generate_random_vectors(limits, 8, seed=seed)
    core = GoldenCore(limits)
    for rec in records:
        if rec.is_reset:
            core.reset()
            continue
        out = core.run_packet(rec.words_in)
        assert np.array_equal(out, rec.words_out)
        if not rec.cls.startswith("refused"):
            assert trailer_status(out) == 0, rec.cls  # every ordinary job is accepted


def test_resident_after_task_reads_the_state_a_task_kept() -> None:
    """Each resident_after_task record is an accepted job on the resident references (no
    LOAD_REF) right after an accepted TASK job, so the cores must have kept the base y_ref
    through that TASK (the half of the accumulator words it did not write); and its output
    depends on that y_ref: the golden with the resident y_ref zeroed answers differently."""
    from copy import deepcopy

    from deltamtl.contract.encoding import parse_header
    from deltamtl.contract.formats import JobFlag, Mode

    seed = seeding.seed_for("test_resident_after_task_reads_the_state_a_task_kept")
    records = generate_random_vectors(LIMITS, 12, seed=seed)
    core = GoldenCore(LIMITS)
    prev = None  # header of the last job since a reset
    checked = 0
    for rec in records:
        if rec.is_reset:
            core.reset()
            prev = None
            continue
        hdr = parse_header(rec.words_in)
        if rec.cls == "resident_after_task":
            assert hdr["mode"] in (Mode.TEMPORAL, Mode.TASK) and not hdr["flags"] & JobFlag.LOAD_REF
            assert prev is not None and prev["mode"] == Mode.TASK
            zeroed = deepcopy(core.state)
            zeroed.y_ref = np.zeros_like(zeroed.y_ref)
            other = GoldenCore(LIMITS)
            other.state = zeroed
            assert not np.array_equal(other.run_packet(rec.words_in), rec.words_out)
            checked += 1
        out = core.run_packet(rec.words_in)
        assert np.array_equal(out, rec.words_out)
        assert trailer_status(out) == 0 or rec.cls.startswith("refused"), rec.cls
        prev = hdr if trailer_status(out) == 0 else prev
    assert checked >= 2
