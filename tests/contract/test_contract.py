"""The integer contract: rounding, requantisation, delta encoding, field layout."""

from fractions import Fraction
from math import floor

import numpy as np
import pytest
from deltamtl.contract.descriptor import Region, regions_used
from deltamtl.contract.formats import (
    ACT_MAX,
    ACT_MIN,
    REQ_MULT_MAX,
    REQ_SHIFT_MAX,
    REQ_SHIFT_MIN,
    VALID_FLAGS,
    JobFlag,
    Mode,
    choose_requant,
    keep_delta,
    quantize_activation,
    requantize,
    wrap_int32,
)
from deltamtl.contract.limits import TINY_LIMITS, CoreLimits
from deltamtl.contract.packets import (
    HEADER_FIELDS,
    NZ_FIELDS,
    REQ_ENTRY_BITS,
    REQ_FIELDS,
    STREAM_DATA_BITS,
    TRAILER_FIELDS,
    Section,
    input_sections,
    output_sections,
)
from deltamtl.contract.registers import KERNEL_ARGS, register

from tests.helpers import seeding


def _requant_reference(acc: int, mult: int, shift: int) -> int:
    # round half towards +inf, then saturate: floor(acc*mult / 2^shift + 1/2)
    value = floor(Fraction(acc * mult, 1 << shift) + Fraction(1, 2))
    return max(ACT_MIN, min(ACT_MAX, value))


def test_requantize_hand_cases() -> None:
    acc = np.array([[3, -3, -1, 1, 2, -2, 1000, -1000]], dtype=np.int32)
    out = requantize(acc, np.ones(8, np.uint16), np.ones(8, np.uint8))
    # 1.5 -> 2, -1.5 -> -1, -0.5 -> 0, 0.5 -> 1, 1 -> 1, -1 -> -1, saturation both ways
    assert out.tolist() == [[2, -1, 0, 1, 1, -1, 127, -128]]


def test_requantize_matches_exact_rational_rounding() -> None:
    rng = seeding.rng("test_requantize_matches_exact_rational_rounding")
    acc = rng.integers(-(2**31), 2**31, size=(64, 16), dtype=np.int64).astype(np.int32)
    acc[:8] = rng.integers(-5000, 5000, size=(8, 16))
    mult = rng.integers(0, REQ_MULT_MAX + 1, 16).astype(np.uint16)
    shift = rng.integers(REQ_SHIFT_MIN, REQ_SHIFT_MAX + 1, 16).astype(np.uint8)
    shift[:8] = rng.integers(10, 24, 8)
    got = requantize(acc, mult, shift)
    for idx in np.ndindex(acc.shape):
        o = idx[1]
        assert got[idx] == _requant_reference(int(acc[idx]), int(mult[o]), int(shift[o]))


def test_requantize_rejects_out_of_range_parameters() -> None:
    acc = np.zeros((1, 1), np.int32)
    with pytest.raises(ValueError, match="multiplier"):
        requantize(acc, np.array([REQ_MULT_MAX + 1]), np.array([4]))
    with pytest.raises(ValueError, match="shift"):
        requantize(acc, np.array([1]), np.array([0]))


def test_choose_requant_precision_and_errors() -> None:
    rng = seeding.rng("test_choose_requant_precision_and_errors")
    real = 10.0 ** rng.uniform(-9, 2, 200)
    mult, shift = choose_requant(real)
    approx = mult.astype(np.float64) / 2.0 ** shift.astype(np.float64)
    assert np.all(mult <= REQ_MULT_MAX)
    # at least 14 significant bits unless the shift is pinned at its maximum
    pinned = shift == REQ_SHIFT_MAX
    assert np.all(np.abs(approx - real)[~pinned] / real[~pinned] < 2.0**-13)
    assert choose_requant(np.array([0.0]))[0][0] == 0
    with pytest.raises(ValueError, match="channel"):
        choose_requant(np.array([1.0, -2.0]))
    with pytest.raises(ValueError, match="too small"):
        choose_requant(np.array([1e6]))


def test_quantize_activation_rounds_half_to_even_and_clamps() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1000.0, -1000.0], dtype=np.float32)
    assert quantize_activation(x, 1.0).tolist() == [0, 2, 2, 0, -2, 127, -128]
    with pytest.raises(ValueError):
        quantize_activation(x, 0.0)


def test_keep_delta_threshold_rule() -> None:
    rng = seeding.rng("test_keep_delta_threshold_rule")
    x = rng.integers(-128, 128, (32, 40)).astype(np.int8)
    ref = rng.integers(-128, 128, (32, 40)).astype(np.int8)
    th = int(rng.integers(1, 60))
    d = keep_delta(x, ref, th)
    full = x.astype(np.int16) - ref.astype(np.int16)
    assert np.array_equal(d, np.where(np.abs(full) >= th, full, 0))
    assert np.array_equal(keep_delta(x, ref, 1), full)  # th = 1 is lossless
    assert d.min() >= -255 and d.max() <= 255
    for bad in (0, 256):
        with pytest.raises(ValueError, match="threshold"):
            keep_delta(x, ref, bad)


def test_wrap_int32() -> None:
    vals = np.array([2**31, -(2**31) - 1, 2**32 + 5, -7], dtype=np.int64)
    assert wrap_int32(vals).tolist() == [-(2**31), 2**31 - 1, 5, -7]


def test_fields_do_not_overlap_and_fit_a_word() -> None:
    for group in (HEADER_FIELDS, NZ_FIELDS, TRAILER_FIELDS):
        used: dict[int, int] = {}
        for f in group:
            mask = ((1 << f.width) - 1) << f.lsb
            assert f.lsb + f.width <= STREAM_DATA_BITS
            assert used.get(f.word, 0) & mask == 0, f.name
            used[f.word] = used.get(f.word, 0) | mask
    for f in REQ_FIELDS:
        assert f.lsb + f.width <= REQ_ENTRY_BITS
    words = [0, 0]
    with pytest.raises(ValueError, match="does not fit"):
        HEADER_FIELDS[0].put(words, 4)


def test_sections_and_regions_are_consistent() -> None:
    p, i, o, nnz = 7, 19, 13, 5
    for mode in Mode:
        for flags in range(VALID_FLAGS + 1):
            flags = JobFlag(flags)
            ins = dict(input_sections(mode, flags, p, i, o, nnz))
            used = regions_used(mode, flags, nnz)
            assert (Section.W in ins) == (Region.W in used)
            assert (Section.XREF in ins) == (Region.XREF in used)
            assert (Section.BIAS in ins) == (Region.BIAS in used)
            outs = dict(output_sections(flags, p, i, o))
            assert (Section.XREF_OUT in outs) == (Region.XREF_OUT in used)
            assert outs[Section.TRAILER] == 1
    assert output_sections(JobFlag.EMIT_REF, p, i, o, ok=False) == [(Section.TRAILER, 1)]


def test_register_map_follows_vitis_layout() -> None:
    offsets = [r.offset for r in KERNEL_ARGS]
    assert offsets[0] == 0x10 and offsets == sorted(offsets)
    for reg, nxt in zip(KERNEL_ARGS, KERNEL_ARGS[1:], strict=False):
        # data words plus one reserved/control word, as Vitis HLS lays them out
        assert nxt.offset - reg.offset == reg.bits // 8 + 4
    assert register("status").direction == "out"
    with pytest.raises(KeyError):
        register("nope")


def test_core_limits_validation() -> None:
    with pytest.raises(ValueError, match="max_in"):
        CoreLimits(max_tokens=4, max_in=0, max_out=4, max_nnz_dw=4)
    with pytest.raises(ValueError, match="16-bit"):
        CoreLimits(max_tokens=70000, max_in=4, max_out=4, max_nnz_dw=4)


def test_core_limits_weight_bank_bound() -> None:
    assert CoreLimits(4, 8, 16, 4).max_weights == 8 * 16  # default: the full product
    assert TINY_LIMITS.max_weights < TINY_LIMITS.max_in * TINY_LIMITS.max_out
    with pytest.raises(ValueError, match="max_weights"):
        CoreLimits(4, 8, 16, 4, max_weights=8 * 16 + 1)
    with pytest.raises(ValueError, match="max_weights"):
        CoreLimits(4, 8, 16, 4, max_weights=15)
