"""C simulation of the core with g++: tb_core runs a fresh random .dmtv file bit for bit.

This is what `make csim` does, at CI size (>= 500 jobs over every generated class)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.vectors import CLASSES, generate_random_vectors, read_vectors, write_vectors
from deltamtl.hls.build import BUILD_ROOT, limits_from_params_header, run_csim

from tests.helpers import seeding

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def test_tb_core_random_vectors_all_classes(tmp_path):
    limits = limits_from_params_header()
    path = tmp_path / "csim.dmtv"
    seed = seeding.seed_for("test_tb_core_random_vectors_all_classes")
    write_vectors(path, generate_random_vectors(limits, n_sequences=80, seed=seed), limits)
    report = run_csim(path)
    print(report.table())
    assert report.ok, report.log
    assert report.total >= 500
    generated = set(CLASSES) - {"reset", "model"}  # "model" records come from an export
    assert generated <= set(report.per_class), generated - set(report.per_class)


def test_tb_core_detects_a_wrong_expected_word(tmp_path):
    """The bench is not vacuous: one flipped bit in one expected packet fails that record."""
    limits = limits_from_params_header()
    rng = seeding.rng("test_tb_core_detects_a_wrong_expected_word")
    records = generate_random_vectors(limits, n_sequences=6, seed=int(rng.integers(1 << 31)))
    jobs = [k for k, r in enumerate(records) if not r.is_reset and r.words_out.size > 1]
    k = int(rng.choice(jobs))
    word = int(rng.integers(0, records[k].words_out.size - 1))
    records[k].words_out[word] ^= np.uint64(1 << int(rng.integers(0, 64)))
    path = tmp_path / "bad.dmtv"
    write_vectors(path, records, limits)
    report = run_csim(path)
    assert report.total - report.passed == 1
    passed, total = report.per_class[records[k].cls]
    assert passed == total - 1


def test_tb_core_refuses_vectors_of_other_limits(tmp_path):
    other = CoreLimits(max_tokens=8, max_in=16, max_out=16, max_nnz_dw=64, lanes=4)
    path = tmp_path / "other.dmtv"
    write_vectors(path, generate_random_vectors(other, n_sequences=1, seed=1), other)
    assert read_vectors(path)[0] == other
    with pytest.raises(Exception, match="limits"):
        run_csim(path)


def test_build_cache_reuses_the_binary():
    from deltamtl.hls.build import build

    first = build("tb_core")
    assert first.is_file() and first.parent.parent == BUILD_ROOT
    mtime = first.stat().st_mtime_ns
    assert build("tb_core") == first and first.stat().st_mtime_ns == mtime


def test_tb_system_ddr_images_with_address_sanitizer(tmp_path):
    """fetch -> core -> commit in C++ over DDR images (golden results in the output regions,
    malformed descriptors leave the image unchanged), built with AddressSanitizer so an
    access beyond the declared buffer fails the run."""
    from deltamtl.contract.ddr_image import ddr_cases_from_records, write_ddr_cases
    from deltamtl.hls.build import run_tb_system

    limits = limits_from_params_header()
    rng = seeding.rng("test_tb_system_ddr_images_with_address_sanitizer")
    records = generate_random_vectors(limits, n_sequences=10, seed=int(rng.integers(1 << 31)))
    cases = ddr_cases_from_records(records, limits, rng, variants_every=3)
    kinds = {c.name.rstrip("0123456789") for c in cases}
    assert {"dense", "task", "bad_magic", "misaligned_x", "y_overlaps_x", "buffer_too_short",
            "refused_dims", "refused_no_state"} <= kinds
    path = tmp_path / "system.dmtd"
    write_ddr_cases(path, cases, limits)
    passed, total, log = run_tb_system(path, sanitize=True)
    assert total >= 80 and passed == total, log
    # a wrong expected byte is caught
    bad = next(c for c in cases if c.name.startswith("dense"))
    bad.after[-1] ^= 0xFF
    write_ddr_cases(path, cases, limits)
    passed, total, _ = run_tb_system(path, sanitize=True)
    assert passed == total - 1
