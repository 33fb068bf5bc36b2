"""Test vectors for C and RTL simulation: core packet sequences with expected outputs.

File format (``.dmtv``, all little-endian; the headers are defined once in
deltamtl.contract.file_layouts, and hls/tb/dmtv.h reads them through the generated
hls/generated/vector_files.h; the cocotb benches read through this module):

    file header (DMTV_FILE_HEADER): magic "DMTV", version, n_records, the limits
                              (LIMIT_FIELDS: max_tokens ... token_rows, beat_words)
    n_records x record:       record header (DMTV_RECORD_HEADER): class_id, n_in_words,
                              n_out_words, reserved (0)
                              n_in_words  x uint64: the core input packet (TLAST on the last
                                                    beat of beat_words words)
                              n_out_words x uint64: the expected core output packet

Records run in order on ONE core instance, because jobs depend on resident state (weight
bank, reuse buffer). A record with n_in_words == 0 is a reset of the core. The limits in
the header are the compiled maxima the expected outputs assume (refusals depend on them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from deltamtl.contract.atomic import atomic_write_bytes
from deltamtl.contract.encoding import pack_job, with_header_field
from deltamtl.contract.file_layouts import (
    DMTV_FILE_HEADER,
    DMTV_MAGIC,
    DMTV_RECORD_HEADER,
    DMTV_VERSION,
    LIMIT_FIELDS,
    PAYLOAD_WORD_BYTES,
    VectorFileError,
    read_file_bytes,
    read_file_header,
)
from deltamtl.contract.formats import ACT_MAX, ACT_MIN, REQ_MULT_MAX, JobFlag, Mode, choose_requant
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import CsrDelta, SiteJob
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import HEADER_FIELDS, Section, input_sections, section_offsets

# job tags count records and wrap at the width of the header's tag field
_TAG_MASK = next(f for f in HEADER_FIELDS if f.name == "tag").mask

MAGIC = DMTV_MAGIC
VERSION = DMTV_VERSION

# Job classes, by id. Benches report per class; the cycle model is checked per class.
CLASSES: tuple[str, ...] = (
    "reset",
    "dense",
    "temporal",
    "task",
    "th1_lossless",
    "zero_delta",
    "full_delta",
    "max_dims",
    "saturation",
    "sub_temporal_patch",
    "refused_header",
    "refused_dims",
    "refused_nnz",
    "refused_index",
    "refused_no_state",
    "refused_length",
    "model",
    # appended, so that the ids above (written into .dmtv files) keep their meaning
    "resident_after_task",
)
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}


@dataclass
class Record:
    cls: str
    words_in: np.ndarray  # uint64; empty for a reset
    words_out: np.ndarray  # uint64

    @property
    def is_reset(self) -> bool:
        return self.words_in.size == 0


def write_vectors(path: str | Path, records: list[Record], limits: CoreLimits) -> None:
    """Write records atomically (temporary file in the same folder, then rename)."""
    parts = [DMTV_FILE_HEADER.pack(magic=MAGIC, version=VERSION, n_records=len(records),
                                   **{f: getattr(limits, f) for f in LIMIT_FIELDS})]
    for rec in records:
        parts.append(DMTV_RECORD_HEADER.pack(class_id=CLASS_ID[rec.cls],
                                             n_in_words=rec.words_in.size,
                                             n_out_words=rec.words_out.size))
        parts.append(np.asarray(rec.words_in, dtype="<u8").tobytes())
        parts.append(np.asarray(rec.words_out, dtype="<u8").tobytes())
    atomic_write_bytes(path, b"".join(parts))


def read_vectors(path: str | Path) -> tuple[CoreLimits, list[Record]]:
    """Read and validate a vector file. Anything malformed (truncation, a damaged header, a
    count or size beyond the file) is a :class:`VectorFileError`, one line naming the file,
    the record index, the field and its value."""
    data = read_file_bytes(path)
    _head, limits = read_file_header(path, data, DMTV_FILE_HEADER, MAGIC, VERSION, "n_records",
                                     DMTV_RECORD_HEADER.size)
    n = _head["n_records"]
    pos, records = DMTV_FILE_HEADER.size, []
    for k in range(n):
        where = f"{path}: record {k}"
        rh = DMTV_RECORD_HEADER.read(data, pos, where)
        cls_id, n_in, n_out = rh["class_id"], rh["n_in_words"], rh["n_out_words"]
        pos += DMTV_RECORD_HEADER.size
        if cls_id >= len(CLASSES):
            raise VectorFileError(f"{where}: class_id {cls_id} unknown (0..{len(CLASSES) - 1})")
        if rh["reserved"]:
            raise VectorFileError(f"{where}: reserved {rh['reserved']}, expected 0")
        if (n_in == 0) != (n_out == 0):
            raise VectorFileError(f"{where}: n_in_words {n_in} with n_out_words {n_out} (a reset "
                                  "has neither, a job both)")
        if (n_in == 0) != (cls_id == CLASS_ID["reset"]):
            raise VectorFileError(f"{where}: class_id {cls_id} ({CLASSES[cls_id]}) with "
                                  f"n_in_words {n_in} (only a reset has no words)")
        end = pos + PAYLOAD_WORD_BYTES * (n_in + n_out)
        if end > len(data):
            raise VectorFileError(f"{where}: n_in_words {n_in} + n_out_words {n_out}: payload of "
                                  f"{end - pos} bytes, {len(data) - pos} left in the file")
        words = np.frombuffer(data, dtype="<u8", count=n_in + n_out, offset=pos)
        records.append(Record(CLASSES[cls_id], words[:n_in].copy(), words[n_in:].copy()))
        pos = end
    if pos != len(data):
        raise VectorFileError(f"{path}: {len(data) - pos} trailing bytes after the {n} records "
                              "of n_records")
    return limits, records


def iter_jobs(records: list[Record]) -> Iterator[Record]:
    yield from records


# ---------------------------------------------------------------------------------------
# Random job generator: every mode, residency sequences, edge cases and refusals
# ---------------------------------------------------------------------------------------
class _Gen:
    def __init__(self, limits: CoreLimits, seed: int) -> None:
        self.limits = limits
        self.rng = np.random.default_rng(seed)
        self.core = GoldenCore(limits)
        self.records: list[Record] = []
        self.tag = 0

    # -- helpers -----------------------------------------------------------------------
    def _dims(self, big: bool = False) -> tuple[int, int, int]:
        lim = self.limits
        if big:  # the largest job the build accepts: O = max_out, I as large as max_weights allows
            return lim.max_tokens, min(lim.max_in, lim.max_weights // lim.max_out), lim.max_out
        p = int(self.rng.integers(1, min(lim.max_tokens, 16) + 1))
        o = int(self.rng.integers(1, min(lim.max_out, 48) + 1))
        # accepted jobs only: O*I within the weight bank
        i = int(self.rng.integers(1, min(lim.max_in, 48, lim.max_weights // o) + 1))
        return p, i, o

    def _i8(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.integers(ACT_MIN, ACT_MAX + 1, shape).astype(np.int8)

    def _requant(self, o: int, in_dim: int, saturate: bool = False) -> tuple:
        # A realistic output scale maps the accumulator spread onto int8; saturation
        # classes use a multiplier far too large so most outputs clamp.
        spread = 128.0 * 128.0 * np.sqrt(in_dim)
        base = (1e-1 if saturate else 127.0 / spread) * self.rng.uniform(0.5, 2.0, o)
        return choose_requant(base)

    def _dw(self, o: int, i: int, w: np.ndarray, density: float) -> CsrDelta:
        mask = self.rng.random((o, i)) < density
        vals = self.rng.integers(-24, 25, (o, i))
        vals = np.where(mask, vals, 0)
        # W_b + dW must stay int8 (the export guarantees it): clip the delta accordingly
        vals = np.clip(w.astype(np.int32) + vals, ACT_MIN, ACT_MAX) - w.astype(np.int32)
        nnz_cap = self.limits.max_nnz_dw
        dense = vals.astype(np.int8)
        if np.count_nonzero(dense) > nnz_cap:
            rows, cols = np.nonzero(dense)
            drop = self.rng.permutation(rows.size)[nnz_cap:]
            dense[rows[drop], cols[drop]] = 0
        return CsrDelta.from_dense(dense)

    def _perturb(self, x: np.ndarray, frac: float, scale: int = 6) -> np.ndarray:
        change = (self.rng.random(x.shape) < frac) * self.rng.integers(-scale, scale + 1, x.shape)
        return np.clip(x.astype(np.int32) + change, ACT_MIN, ACT_MAX).astype(np.int8)

    def _bias(self, o: int) -> np.ndarray:
        return self.rng.integers(-(1 << 16), 1 << 16, o).astype(np.int32)

    def pack(self, job: SiteJob) -> np.ndarray:
        return pack_job(job, self.limits.beat_words)

    def emit(self, cls: str, job: SiteJob, words: np.ndarray | None = None) -> None:
        self.tag = (self.tag + 1) & _TAG_MASK
        job.tag = self.tag
        # hand-made (malformed) packets are sent as given
        words_in = self.pack(job) if words is None else np.asarray(words, dtype=np.uint64)
        out = self.core.run_packet(words_in)
        self.records.append(Record(cls, words_in, out))

    def reset(self) -> None:
        self.core.reset()
        self.records.append(Record("reset", np.zeros(0, np.uint64), np.zeros(0, np.uint64)))

    # -- sequences ---------------------------------------------------------------------
    def site_sequence(self, cls_task: str = "task", big: bool = False, th: int | None = None,
                      delta_frac: float | None = None, saturate: bool = False) -> None:
        """A multi-task site over a few frames: base DENSE keyframe, then base TEMPORAL,
        sub-task TASK (resident refs/weights) and sub-task TEMPORAL with a dW patch."""
        p, i, o = self._dims(big)
        w = self._i8((o, i))
        mult, shift = self._requant(o, i, saturate)
        dw = self._dw(o, i, w, float(self.rng.uniform(0.02, 0.3)))
        x = self._i8((p, i))
        th_ = int(self.rng.integers(1, 5)) if th is None else th
        frac = float(self.rng.uniform(0.05, 0.6)) if delta_frac is None else delta_frac
        job = SiteJob(Mode.DENSE, JobFlag.LOAD_W | JobFlag.EMIT_REF, th_, x, mult, shift, o, w=w,
                      bias=self._bias(o))
        base_x_ref, base_y_ref = self._expect_refs(job)
        self.emit("dense", job)
        # sub-task keyframe state for its own temporal reuse
        xk = self._perturb(x, frac)
        job = SiteJob(Mode.TASK, JobFlag.EMIT_REF, th_, xk, mult, shift, o, dw=dw,
                      bias=self._bias(o) >> 4)
        sub_x_ref, sub_y_ref = self._expect_refs(job)
        self.emit(cls_task, job)
        for _frame in range(int(self.rng.integers(1, 3))):
            x = self._perturb(x, frac)
            cls = {"task": "temporal"}.get(cls_task, cls_task)
            # the weight bank is resident (the dW patch is undone after each job); reload
            # it on every other frame so both paths are exercised
            load_w = JobFlag.LOAD_W if self.rng.random() < 0.5 else JobFlag.NONE
            job = SiteJob(Mode.TEMPORAL, JobFlag.LOAD_REF | JobFlag.EMIT_REF | load_w, th_, x,
                          mult, shift, o, w=w if load_w else None, x_ref=base_x_ref,
                          y_ref=base_y_ref)
            base_x_ref, base_y_ref = self._expect_refs(job)
            self.emit(cls, job)
            xk = self._perturb(x, frac)
            self.emit(cls_task, SiteJob(Mode.TASK, JobFlag.NONE, th_, xk, mult, shift, o, dw=dw,
                                        bias=self._bias(o) >> 4))
            xs = self._perturb(sub_x_ref, frac)
            job = SiteJob(Mode.TEMPORAL, JobFlag.LOAD_REF | JobFlag.EMIT_REF, th_, xs, mult,
                          shift, o, dw=dw, x_ref=sub_x_ref, y_ref=sub_y_ref)
            sub_x_ref, sub_y_ref = self._expect_refs(job)
            self.emit("sub_temporal_patch", job)

    def task_keeps_resident(self, keyframe: bool = True) -> None:
        """TASK jobs, then jobs on the resident references they left (no LOAD_REF).

        A TASK job never changes the base state: the cores compute it in the accumulators'
        scratch slot and keep the resident y_ref in the other half of the same words (the
        HLS core writes back the half it read; the RTL a half with byte enables). Only a
        later job without LOAD_REF reads that kept half, which site_sequence never runs
        (every TASK there is followed by a LOAD_REF job). Here: [DENSE keyframe,] TASK with
        dW (act and weight pass), TEMPORAL on the resident refs ("resident_after_task",
        reads what the TASK kept, then flips), TASK with LOAD_REF (the loaded refs go to the
        scratch slot too), TASK on the resident refs ("resident_after_task", reads the
        TEMPORAL's result kept by the LOAD_REF TASK, in the other half than the first).
        Without ``keyframe``, the state the previous sequence left is the base."""
        st = self.core.state
        if (keyframe or st.x_ref is None or st.w is None
                or st.w.shape != (st.y_ref.shape[1], st.x_ref.shape[1])):
            p, i, o = self._dims()
            w = self._i8((o, i))
            mult, shift = self._requant(o, i)
            self.emit("dense", SiteJob(Mode.DENSE, JobFlag.LOAD_W, int(self.rng.integers(1, 5)),
                                       self._i8((p, i)), mult, shift, o, w=w,
                                       bias=self._bias(o)))
        else:
            (p, i), o = st.x_ref.shape, st.y_ref.shape[1]
            w = st.w
            mult, shift = self._requant(o, i)
        th = int(self.rng.integers(1, 5))
        frac = float(self.rng.uniform(0.05, 0.6))

        def dw() -> CsrDelta:
            return self._dw(o, i, w, float(self.rng.uniform(0.02, 0.3)))

        def emit_ref() -> JobFlag:
            return JobFlag.EMIT_REF if self.rng.random() < 0.5 else JobFlag.NONE

        job = SiteJob(Mode.TASK, JobFlag.EMIT_REF, th, self._perturb(self.core.state.x_ref, frac),
                      mult, shift, o, dw=dw(), bias=self._bias(o) >> 4)
        sub_x_ref, sub_y_ref = self._expect_refs(job)
        self.emit("task", job)
        load_w = JobFlag.LOAD_W if self.rng.random() < 0.5 else JobFlag.NONE
        self.emit("resident_after_task", SiteJob(
            Mode.TEMPORAL, emit_ref() | load_w, th, self._perturb(self.core.state.x_ref, frac),
            mult, shift, o, w=w if load_w else None,
            dw=dw() if self.rng.random() < 0.5 else None))
        self.emit("task", SiteJob(Mode.TASK, JobFlag.LOAD_REF | emit_ref(), th,
                                  self._perturb(sub_x_ref, frac), mult, shift, o, dw=dw(),
                                  bias=self._bias(o) >> 4, x_ref=sub_x_ref, y_ref=sub_y_ref))
        self.emit("resident_after_task", SiteJob(
            Mode.TASK, emit_ref(), th, self._perturb(self.core.state.x_ref, frac), mult, shift,
            o, dw=dw(), bias=self._bias(o) >> 4))

    def _expect_refs(self, job: SiteJob) -> tuple[np.ndarray, np.ndarray]:
        from copy import deepcopy

        from deltamtl.contract.golden_core import execute_job

        result = execute_job(job, deepcopy(self.core.state), self.limits)
        return result.x_ref, result.y_ref

    def refusals(self) -> None:
        lim = self.limits
        p, i, o = self._dims()
        mult, shift = self._requant(o, i)
        good = SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, self._i8((p, i)), mult, shift, o,
                       w=self._i8((o, i)), bias=self._bias(o))
        self.reset()
        # resident state requested on a fresh core
        self.emit("refused_no_state", SiteJob(Mode.TASK, JobFlag.NONE, 1, good.x, mult, shift,
                                              o, bias=good.bias))
        self.emit("refused_no_state", SiteJob(Mode.DENSE, JobFlag.NONE, 1, good.x, mult, shift,
                                              o, bias=good.bias))
        words = self.pack(good)
        self.emit("refused_header", good, with_header_field(words, "mode", 3))  # no mode 3
        self.emit("refused_header", good, with_header_field(words, "th", 0))
        big = SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, self._i8((lim.max_tokens + 1, 1)),
                      mult[:1], shift[:1], 1, w=self._i8((1, 1)), bias=self._bias(1))
        self.emit("refused_dims", big)
        big = SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, self._i8((1, lim.max_in + 1)),
                      mult[:1], shift[:1], 1, w=self._i8((1, lim.max_in + 1)), bias=self._bias(1))
        self.emit("refused_dims", big)
        if lim.max_weights < lim.max_in * lim.max_out:  # each dim fits, the weight bank not
            o_big = lim.max_out
            i_big = lim.max_weights // o_big + 1
            big = SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, self._i8((1, i_big)), *self._requant(
                o_big, i_big), o_big, w=self._i8((o_big, i_big)), bias=self._bias(o_big))
            self.emit("refused_dims", big)
        self.emit("refused_nnz", good, with_header_field(words, "nnz_dw", lim.max_nnz_dw + 1))
        # a dW column index beyond in_dim
        dense = np.zeros((o, i), np.int8)
        dense[0, 0] = 3
        job = SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, good.x, mult, shift, o, w=good.w,
                      dw=CsrDelta.from_dense(dense), bias=good.bias)
        words_bad = self.pack(job)
        b = lim.beat_words
        nz_at, _n = section_offsets(input_sections(job.mode, job.flags, p, i, o, job.nnz_dw,
                                                   b))[Section.DW]
        words_bad[nz_at] = np.uint64(int(words_bad[nz_at]) | 0xFFFF)
        self.emit("refused_index", job, words_bad)
        # one beat short, one beat too long
        self.emit("refused_length", good, self.pack(good)[:-b])
        self.emit("refused_length", good, np.concatenate([self.pack(good), np.zeros(b, np.uint64)]))
        # after refusals, a clean job must still work
        self.emit("dense", good)


def generate_random_vectors(limits: CoreLimits, n_sequences: int, seed: int = 0) -> list[Record]:
    """Records covering every mode, residency, edge cases and refusals (>= 5 per sequence)."""
    g = _Gen(limits, seed)
    g.refusals()
    g.site_sequence(cls_task="max_dims", big=True)
    for k in range(n_sequences):
        kind = k % 6
        if kind == 0:
            g.site_sequence()
        elif kind == 1:
            g.site_sequence(cls_task="th1_lossless", th=1)
        elif kind == 2:
            g.site_sequence(cls_task="zero_delta", delta_frac=0.0)
        elif kind == 3:
            g.site_sequence(cls_task="full_delta", th=1, delta_frac=1.0)
        elif kind == 4:
            g.site_sequence(cls_task="saturation", saturate=True)
        else:
            g.reset()
            g.site_sequence(th=int(g.rng.integers(1, 40)))
    # after the others, so that their records do not depend on these: about one in ten
    # sequences, at least one (the first continues from the state the last one left)
    for k in range(max(1, n_sequences // 10)):
        g.task_keeps_resident(keyframe=k > 0)
    return g.records


def main(argv: list[str] | None = None) -> int:
    import argparse

    from deltamtl.contract.errors import count_arg

    parser = argparse.ArgumentParser(description="write random core test vectors")
    parser.add_argument("out", type=Path)
    parser.add_argument("--sequences", type=count_arg, default=100)
    parser.add_argument("--seed", type=count_arg, default=0)
    args = parser.parse_args(argv)
    from deltamtl.contract.limits import TINY_LIMITS

    records = generate_random_vectors(TINY_LIMITS, args.sequences, args.seed)
    write_vectors(args.out, records, TINY_LIMITS)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.cls] = counts.get(r.cls, 0) + 1
    print(f"wrote {args.out}: {len(records)} records " + ", ".join(
        f"{k}={v}" for k, v in sorted(counts.items())))
    return 0


__all__ = ["CLASSES", "Record", "read_vectors", "write_vectors", "generate_random_vectors",
           "REQ_MULT_MAX", "VectorFileError"]
