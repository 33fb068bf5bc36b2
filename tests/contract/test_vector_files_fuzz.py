""".dmtv/.dmtd readers on damaged files: named one-line errors, never a crash from inside.

Unit cases pin the message (file, record/case index, field, value) for each kind of damage;
the property tests truncate, flip bytes and overwrite header fields of real files and
require either a clean load that writes back byte for byte, or a VectorFileError line
naming the file. Budgets: fast tier a few seconds; ``-m slow`` the long run.
"""

from __future__ import annotations

import struct
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from deltamtl.contract.ddr_image import ddr_cases_from_records, read_ddr_cases, write_ddr_cases
from deltamtl.contract.errors import UserInputError
from deltamtl.contract.file_layouts import (
    DMTD_CASE_HEADER,
    DMTD_FILE_HEADER,
    DMTV_FILE_HEADER,
    DMTV_RECORD_HEADER,
    DMTV_VERSION,
    VectorFileError,
)
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.vectors import generate_random_vectors, read_vectors, write_vectors
from hypothesis import event, given
from hypothesis import strategies as st

from tests.helpers import seeding
from tests.helpers.fuzz import fast, long, seeded

LIMITS = CoreLimits(max_tokens=4, max_in=8, max_out=8, max_nnz_dw=16, lanes=2, max_weights=48,
                    token_rows=2)


@cache
def _files() -> dict[str, bytes]:
    """One small valid file of each kind, drawn from the session seed."""
    import tempfile

    records = generate_random_vectors(LIMITS, 2, seed=seeding.seed_for("vector files fuzz"))
    cases = ddr_cases_from_records(records, LIMITS, seeding.rng("vector files fuzz"), variants_every=5)
    with tempfile.TemporaryDirectory() as tmp:
        write_vectors(Path(tmp) / "v.dmtv", records, LIMITS)
        write_ddr_cases(Path(tmp) / "d.dmtd", cases, LIMITS)
        return {"dmtv": (Path(tmp) / "v.dmtv").read_bytes(), "dmtd": (Path(tmp) / "d.dmtd").read_bytes()}


READ = {"dmtv": read_vectors, "dmtd": read_ddr_cases}


def _write_back(kind: str, path: Path, loaded) -> bytes:
    limits, items = loaded
    out = path.with_name("back." + kind)
    if kind == "dmtv":
        write_vectors(out, items, limits)
    else:
        write_ddr_cases(out, items, limits)
    return out.read_bytes()


def test_valid_files_round_trip(tmp_path: Path) -> None:
    for kind, data in _files().items():
        path = tmp_path / f"f.{kind}"
        path.write_bytes(data)
        assert _write_back(kind, path, READ[kind](path)) == data


def _u32_at(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<I", value) + data[at + 4:]


def _field(layout, name: str) -> int:
    return next(off for n, _k, off in layout.offsets() if n == name)


REC0 = DMTV_FILE_HEADER.size  # the first record header (a reset: the generator starts with one)
REC1 = REC0 + DMTV_RECORD_HEADER.size  # the second: a job
CASE0 = DMTD_FILE_HEADER.size


@pytest.mark.parametrize(("kind", "damage", "pattern"), [
    ("dmtv", lambda d: d[:10], r"10 bytes, shorter than the \d+-byte file header"),
    ("dmtv", lambda d: b"XXXX" + d[4:], r"file header: magic b'XXXX', expected b'DMTV'"),
    ("dmtv", lambda d: _u32_at(d, 4, 99), r"file header: version 99, this reader knows " + str(DMTV_VERSION)),
    ("dmtv", lambda d: _u32_at(d, _field(DMTV_FILE_HEADER, "n_records"), 0xFFFFFFFF),
     r"file header: n_records 4294967295, but the \d+ bytes after the header hold at most \d+"),
    ("dmtv", lambda d: _u32_at(d, _field(DMTV_FILE_HEADER, "max_in"), 0),
     r"file header: CoreLimits.max_in=0 must be an int in \[1, 2\^24\]"),
    ("dmtv", lambda d: _u32_at(d, _field(DMTV_FILE_HEADER, "max_weights"), 0),
     r"file header: max_weights 0, expected 64"),
    ("dmtv", lambda d: _u32_at(d, REC0 + _field(DMTV_RECORD_HEADER, "class_id"), 999),
     r"record 0: class_id 999 unknown"),
    ("dmtv", lambda d: _u32_at(d, REC0 + _field(DMTV_RECORD_HEADER, "reserved"), 7),
     r"record 0: reserved 7, expected 0"),
    ("dmtv", lambda d: _u32_at(d, REC1 + _field(DMTV_RECORD_HEADER, "n_in_words"), 0xFFFFFFF0),
     r"record 1: n_in_words 4294967280 \+ n_out_words \d+: payload of \d+ bytes, \d+ left"),
    ("dmtv", lambda d: _u32_at(d, REC0 + _field(DMTV_RECORD_HEADER, "n_out_words"), 3),
     r"record 0: n_in_words 0 with n_out_words 3 \(a reset has neither, a job both\)"),
    ("dmtv", lambda d: d[:-3], r"record \d+: n_in_words \d+ \+ n_out_words \d+: payload of"),
    ("dmtv", lambda d: d + b"\0" * 5, r"5 trailing bytes after the \d+ records"),
    ("dmtd", lambda d: b"DMTV" + d[4:], r"file header: magic b'DMTV', expected b'DMTD' \(not a .dmtd file\)"),
    ("dmtd", lambda d: _u32_at(d, CASE0 + _field(DMTD_CASE_HEADER, "reset"), 5),
     r"case 0: reset 5, expected 0 or 1"),
    ("dmtd", lambda d: _u32_at(d, CASE0 + _field(DMTD_CASE_HEADER, "fetch_status"), 1 << 30),
     r"case 0: fetch_status 0x40000000 has unknown KernelStatus bits 0x40000000"),
    ("dmtd", lambda d: d[: len(d) // 2], r"case \d+: (image_bytes \d+: two images|truncated dmtd_case_header)"),
])
def test_damage_is_named(tmp_path: Path, kind: str, damage, pattern: str) -> None:
    path = tmp_path / f"damaged.{kind}"
    path.write_bytes(damage(_files()[kind]))
    with pytest.raises(VectorFileError, match=pattern) as info:
        READ[kind](path)
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert isinstance(info.value, UserInputError) and isinstance(info.value, ValueError)


def test_missing_and_folder_paths_are_named(tmp_path: Path) -> None:
    for read in READ.values():
        with pytest.raises(VectorFileError, match=f"{tmp_path / 'absent'}: no such file"):
            read(tmp_path / "absent")
        with pytest.raises(VectorFileError, match="is a folder"):
            read(tmp_path)


# -- property tests ---------------------------------------------------------------------------
INTERESTING_U32 = st.sampled_from([0, 1, 2, 3, 7, 0xFF, 0xFFFF, 1 << 24, (1 << 24) + 1, 1 << 31,
                                   0xFFFFFFFF]) | st.integers(0, 0xFFFFFFFF)


@st.composite
def damaged(draw):
    kind = draw(st.sampled_from(["dmtv", "dmtd"]))
    data = _files()[kind]
    header_end = (DMTV_FILE_HEADER if kind == "dmtv" else DMTD_FILE_HEADER).size + 32
    op = draw(st.sampled_from(["truncate", "flip", "flip_header", "u32_header", "append", "splice"]))
    if op == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif op in ("flip", "flip_header"):
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, (header_end if op == "flip_header" else len(data)) - 1))
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    elif op == "u32_header":
        at = 4 * draw(st.integers(0, header_end // 4 - 1))
        data = _u32_at(data, at, draw(INTERESTING_U32))
    elif op == "append":
        data = data + draw(st.binary(min_size=1, max_size=40))
    else:  # cut a piece out of the middle
        a = draw(st.integers(0, len(data) - 1))
        data = data[:a] + data[a + draw(st.integers(1, 64)):]
    return kind, op, data


def _check_damaged(tmp_path: Path, case) -> None:
    kind, op, data = case
    path = tmp_path / f"fuzz.{kind}"
    path.write_bytes(data)
    try:
        loaded = READ[kind](path)
    except VectorFileError as exc:
        event(f"{kind} {op}: refused")
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        return
    # accepted: the file is exactly what the writer makes of what was read
    event(f"{kind} {op}: loads")
    assert _write_back(kind, path, loaded) == data


@seeded("vector file damage")
@fast(250)
@given(damaged())
def test_damaged_vector_files_load_exactly_or_fail_named(tmp_path, case) -> None:
    _check_damaged(tmp_path, case)


@pytest.mark.slow
@seeded("vector file damage, long")
@long(20000)
@given(damaged())
def test_damaged_vector_files_load_exactly_or_fail_named_long(tmp_path, case) -> None:
    _check_damaged(tmp_path, case)


def test_random_bytes_are_refused(tmp_path: Path) -> None:
    gen = seeding.rng("random bytes")
    for kind, read in READ.items():
        for n in (0, 3, 40, 4096):
            path = tmp_path / f"noise{n}.{kind}"
            path.write_bytes(gen.integers(0, 256, n, dtype=np.uint8).tobytes())
            with pytest.raises(VectorFileError, match=str(path)):
                read(path)
