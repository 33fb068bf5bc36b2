"""Where `DEPENDENCE inter false` is exact and where the core must forward, proven with g++.

hls/include/dmtl_ram.h's shim (-DDMTL_STORE_DELAY=n) makes every on-chip RAM store of the
pipelined loops visible only n iterations after it was issued, as an II=1 pipeline with a
RAW distance of n would; -DDMTL_NO_FORWARD removes the forwarding registers. The vectors
are the random set with each packet's dW section shuffled and some of its non-zeros
repeated (a packet is not bound to CSR order), so a weight-pass row is loaded again a few
iterations after its store and two patch updates hit one weight word in a row.
(docs/hls.md, "II and dependences")
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from deltamtl.contract.encoding import parse_header, with_header_field
from deltamtl.contract.formats import Mode
from deltamtl.contract.golden_core import GoldenCore, check_header
from deltamtl.contract.limits import CoreLimits
from deltamtl.contract.packets import Section, input_sections
from deltamtl.contract.vectors import Record, generate_random_vectors, write_vectors
from deltamtl.hls.build import build

# T = 4: the activation pass runs as a 4 x 8 array with a partial last tile (P up to 20)
LIM = CoreLimits(max_tokens=20, max_in=48, max_out=40, max_nnz_dw=600, lanes=8, token_rows=4)
FWD_DEPTH = 4  # dmtl_ram.h


def _fwd_depth_in_header() -> int:
    from deltamtl.hls.build import HLS_DIR

    return int(re.search(r"constexpr int FWD_DEPTH = (\d+);", (HLS_DIR / "include" / "dmtl_ram.h")
                         .read_text()).group(1))


def _scramble(records: list[Record], seed: int) -> tuple[list[Record], dict[int, str]]:
    """Records with every accepted packet's dW shuffled plus repeats, expected outputs
    recomputed by the golden core; returns them and {record index: 'task'|'patch'|'none'}
    (which dW loop the record exercises)."""
    rng = np.random.default_rng(seed)
    golden = GoldenCore(LIM)
    out, kind = [], {}
    for rec in records:
        if rec.is_reset:
            golden.reset()
            out.append(rec)
            continue
        words = np.asarray(rec.words_in, dtype=np.uint64)
        hdr = parse_header(words) if words.size >= 2 else None
        k = "none"
        if hdr is not None and not check_header(hdr, LIM) and hdr["nnz_dw"] > 0:
            sections = input_sections(hdr["mode"], hdr["flags"], hdr["tokens"], hdr["in_dim"],
                                      hdr["out_dim"], hdr["nnz_dw"])
            if words.size == sum(n for _s, n in sections):
                start = sum(n for s, n in sections[: [s for s, _n in sections].index(Section.DW)])
                n = hdr["nnz_dw"]
                dw = words[start: start + n]
                extra = min(LIM.max_nnz_dw - n, max(1, n // 4))
                new = np.concatenate([dw, dw[rng.integers(0, n, extra)]])
                # runs of 1-3 non-zeros from shuffled rows: rows come back a few entries later
                new = new[rng.permutation(new.size)]
                words = np.concatenate([words[:start], new, words[start + n:]])
                words = with_header_field(words, "nnz_dw", int(new.size))
                k = "task" if hdr["mode"] == Mode.TASK else "patch"
        kind[len(out)] = k
        out.append(Record(rec.cls, words, golden.run_packet(words)))
    return out, kind


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    records = generate_random_vectors(LIM, n_sequences=24, seed=5)
    scrambled, kind = _scramble(records, seed=6)
    path = tmp_path_factory.mktemp("fwd") / "scrambled.dmtv"
    write_vectors(path, scrambled, LIM)
    return path, kind


def _failing(vectors, *flags: str) -> set[int]:
    path, _kind = vectors
    exe = build("tb_core", LIM, extra_flags=flags)
    proc = subprocess.run([str(exe), str(path), "--verbose"], capture_output=True, text=True,
                          check=False)
    total = re.search(r"^RESULT (\d+) (\d+)$", proc.stdout, re.MULTILINE)
    assert total is not None and int(total.group(2)) > 50, proc.stdout + proc.stderr
    return {int(r) for r in re.findall(r"MISMATCH record (\d+)", proc.stderr)}


def test_shim_depth_matches_the_header():
    assert _fwd_depth_in_header() == FWD_DEPTH


def test_scrambled_vectors_exercise_both_forwarding_loops(vectors):
    _path, kind = vectors
    assert sum(k == "task" for k in kind.values()) >= 10
    assert sum(k == "patch" for k in kind.values()) >= 10


def test_plain_build_is_exact_on_shuffled_and_repeated_dw(vectors):
    assert _failing(vectors) == set()


def test_forwarding_covers_a_raw_distance_of_fwd_depth_plus_one(vectors):
    assert _failing(vectors, f"-DDMTL_STORE_DELAY={FWD_DEPTH + 1}") == set()


def test_without_forwarding_only_the_forwarding_loops_break(vectors):
    _path, kind = vectors
    bad = _failing(vectors, f"-DDMTL_STORE_DELAY={FWD_DEPTH + 1}", "-DDMTL_NO_FORWARD")
    kinds = {kind[r] for r in bad}
    # the weight pass (unordered rows) and the patch (shared weight words) need forwarding
    assert {"task", "patch"} <= kinds, kinds


def test_forwarding_depth_is_the_bound(vectors):
    # a pipeline deeper than the forwarding line would read stale words again
    assert _failing(vectors, f"-DDMTL_STORE_DELAY={FWD_DEPTH + 3}") != set()


@pytest.fixture(scope="module")
def no_dw_vectors(tmp_path_factory):
    """The random set without the packets that carry dW (golden outputs recomputed)."""
    golden = GoldenCore(LIM)
    kept = []
    for rec in generate_random_vectors(LIM, n_sequences=40, seed=7):
        if rec.is_reset:
            golden.reset()
            kept.append(rec)
            continue
        words = np.asarray(rec.words_in, dtype=np.uint64)
        if words.size >= 2 and parse_header(words)["nnz_dw"] > 0:
            continue
        kept.append(Record(rec.cls, words, golden.run_packet(words)))
    path = tmp_path_factory.mktemp("nodw") / "no_dw.dmtv"
    write_vectors(path, kept, LIM)
    return path, {}


@pytest.mark.parametrize("delay", [2, FWD_DEPTH + 1, 12])
def test_dependence_false_loops_need_no_forwarding(no_dw_vectors, delay):
    # load_yref and act_pass carry DEPENDENCE false without forwarding: exact
    # under any store delay, because no iteration loads what an earlier one stored
    assert _failing(no_dw_vectors, f"-DDMTL_STORE_DELAY={delay}", "-DDMTL_NO_FORWARD") == set()
