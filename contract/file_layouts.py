"""Binary layouts of the benches' input files, defined once as data.

* ``.dmtv``: core test vectors (deltamtl.contract.vectors writes and reads them; the C++
  ``tb_core`` reads them through hls/tb/dmtv.h; the cocotb bench through vectors.py);
* ``.dmtd``: DDR cases of the whole fetch -> core -> commit chain
  (deltamtl.contract.ddr_image writes them; the C++ ``tb_system`` reads them).

Each fixed-size header is a :class:`Layout`: named fields in file order, all little-endian.
Python packs and unpacks with ``Layout.struct``; ``deltamtl codegen`` writes the same
layouts as C++ structs with little-endian loaders into hls/generated/vector_files.h, so
neither side spells an offset or a size by hand (docs/hls.md, "Vector files").
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

from deltamtl.contract.errors import UserInputError
from deltamtl.contract.packets import WORD_BYTES


class VectorFileError(UserInputError):
    """A .dmtv/.dmtd file is malformed: one line naming the file, the record (or case)
    index, the field and its value. Readers raise it instead of struct/index errors."""

# field kinds: struct format code, size in bytes and C++ type
_KINDS: dict[str, tuple[str, int, str]] = {
    "magic": ("4s", 4, "char"),  # four ASCII bytes naming the format
    "u32": ("I", 4, "uint32_t"),
    "u64": ("Q", 8, "uint64_t"),
}


@dataclass(frozen=True)
class Layout:
    """A fixed-size little-endian header: ``fields`` are (name, kind) in file order."""

    name: str  # snake_case; the C++ struct is its CamelCase, the constants its UPPER_CASE
    fields: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        unknown = [kind for _name, kind in self.fields if kind not in _KINDS]
        if unknown:
            raise ValueError(f"layout {self.name}: unknown field kinds {unknown}")

    @cached_property
    def struct(self) -> struct.Struct:
        return struct.Struct("<" + "".join(_KINDS[kind][0] for _name, kind in self.fields))

    @property
    def size(self) -> int:
        return self.struct.size

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _kind in self.fields)

    def offsets(self) -> list[tuple[str, str, int]]:
        """(name, kind, byte offset) of every field; '<' formats have no padding."""
        out, at = [], 0
        for name, kind in self.fields:
            out.append((name, kind, at))
            at += _KINDS[kind][1]
        return out

    def pack(self, **values: int | bytes) -> bytes:
        """Pack every field by name; fields named ``reserved`` default to 0."""
        missing = [n for n in self.names if n not in values and n != "reserved"]
        extra = [n for n in values if n not in self.names]
        if missing or extra:
            raise ValueError(f"layout {self.name}: missing fields {missing}, unknown {extra}")
        return self.struct.pack(*(values.get(n, 0) for n in self.names))

    def unpack(self, data: bytes, offset: int = 0) -> dict[str, int | bytes]:
        return dict(zip(self.names, self.struct.unpack_from(data, offset), strict=True))

    def read(self, data: bytes, offset: int, where: str) -> dict[str, int | bytes]:
        """Unpack at ``offset``; :class:`VectorFileError` naming ``where`` ('v.dmtv: record 3')
        when the data ends inside the header."""
        if offset < 0 or offset + self.size > len(data):
            raise VectorFileError(f"{where}: truncated {self.name} ({len(data) - offset} of "
                                  f"{self.size} bytes at offset {offset})")
        return self.unpack(data, offset)


# The compiled maxima a file was generated for: CoreLimits' fields, in its order.
from deltamtl.contract.limits import LIMIT_FIELDS, CoreLimits  # noqa: E402


def read_file_bytes(path) -> bytes:
    """The whole file; a missing or unreadable file is a :class:`VectorFileError`."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise VectorFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise VectorFileError(f"{path}: is a folder, not a file") from None
    except OSError as exc:
        raise VectorFileError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_file_header(path, data: bytes, layout: Layout, magic: bytes, version: int,
                     count: str, min_item_bytes: int) -> tuple[dict, CoreLimits]:
    """Check the file header shared by .dmtv and .dmtd files: (header fields, limits).

    Refuses a short file, a foreign magic, another version, limits CoreLimits refuses and a
    record count the rest of the file cannot hold (each record takes ``min_item_bytes``)."""
    kind = magic.decode("ascii").lower()
    if len(data) < layout.size:
        raise VectorFileError(f"{path}: {len(data)} bytes, shorter than the {layout.size}-byte "
                              f"file header (truncated, or not a .{kind} file)")
    head = layout.unpack(data)
    if head["magic"] != magic:
        raise VectorFileError(f"{path}: file header: magic {head['magic']!r}, expected {magic!r} "
                              f"(not a .{kind} file)")
    if head["version"] != version:
        raise VectorFileError(f"{path}: file header: version {head['version']}, this reader "
                              f"knows {version}")
    try:
        limits = CoreLimits(**{f: head[f] for f in LIMIT_FIELDS})
    except ValueError as exc:
        raise VectorFileError(f"{path}: file header: {exc}") from None
    for f in LIMIT_FIELDS:  # a writer stores the limits as CoreLimits holds them (no 0 = default)
        if getattr(limits, f) != head[f]:
            raise VectorFileError(f"{path}: file header: {f} {head[f]}, expected "
                                  f"{getattr(limits, f)} (as CoreLimits completes it)")
    room = (len(data) - layout.size) // min_item_bytes
    if head[count] > room:
        raise VectorFileError(f"{path}: file header: {count} {head[count]}, but the "
                              f"{len(data) - layout.size} bytes after the header hold at most "
                              f"{room} (truncated file or damaged header)")
    return head, limits


def _file_header(name: str, count: str) -> Layout:
    return Layout(name, (("magic", "magic"), ("version", "u32"), (count, "u32"),
                         *((f, "u32") for f in LIMIT_FIELDS)))


# Payload words (core packets) are uint64, little-endian, one stream word each (beat_words
# of them per beat, the beats in stream order).
PAYLOAD_WORD_BYTES = WORD_BYTES

# .dmtv: file header, then n_records x (record header, n_in_words + n_out_words words)
DMTV_MAGIC = b"DMTV"
DMTV_VERSION = 4  # 3: token_rows in the file header; 4: beat_words
DMTV_FILE_HEADER = _file_header("dmtv_file_header", "n_records")
DMTV_RECORD_HEADER = Layout("dmtv_record_header", (
    ("class_id", "u32"), ("n_in_words", "u32"), ("n_out_words", "u32"), ("reserved", "u32")))

# .dmtd: file header, then n_cases x (case header, image before, image after)
DMTD_MAGIC = b"DMTD"
DMTD_VERSION = 4  # 3: token_rows in the file header; 4: beat_words
DMTD_FILE_HEADER = _file_header("dmtd_file_header", "n_cases")
DMTD_CASE_HEADER = Layout("dmtd_case_header", (
    ("reset", "u32"),  # 1: reset the core's resident state; the images are empty
    ("fetch_status", "u32"), ("commit_status", "u32"), ("reserved", "u32"),
    ("buf_bytes", "u64"), ("desc_offset", "u64"),
    ("image_bytes", "u64"),  # bytes of each of the two images that follow
))

FILE_FORMATS: tuple[tuple[str, bytes, int, tuple[Layout, ...]], ...] = (
    ("DMTV", DMTV_MAGIC, DMTV_VERSION, (DMTV_FILE_HEADER, DMTV_RECORD_HEADER)),
    ("DMTD", DMTD_MAGIC, DMTD_VERSION, (DMTD_FILE_HEADER, DMTD_CASE_HEADER)),
)
