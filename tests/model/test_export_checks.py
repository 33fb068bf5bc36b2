"""Every check of the bundle loader, one case per row of docs/export-format.md's table
("What the loader checks"): a valid bundle, corrupted in one way, is refused with a one-line
BundleError naming the file, the field path and the offending value."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from deltamtl.model.export.bundle import MANIFEST, BundleError, load_bundle
from deltamtl.model.tasks import TASKS

from tests.helpers.seeding import rng
from tests.model.bundle_helpers import (
    array_file,
    copy_bundle,
    read_array,
    rewrite_array,
    save_manifest,
)

pytestmark = pytest.mark.quant

DOC = Path(__file__).resolve().parents[2] / "docs" / "export-format.md"
Mutation = Callable[[Path, dict], object]  # edits the bundle and/or the manifest dict m
QKV, DEPTH = 1, "depth"  # sites[1] is blocks.0.attn.qkv; depth is a sub-task with deltas


def _te(m: dict, site: int = QKV, task: str = DEPTH) -> dict:
    return m["sites"][site]["tasks"][task]


def _raw(data: bytes) -> Mutation:
    def mutate(b: Path, m: dict) -> object:
        (b / MANIFEST).write_bytes(data)
        return "raw"
    return mutate


def _set(path: tuple, value: object) -> Mutation:
    def mutate(b: Path, m: dict) -> None:
        node = m
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    return mutate


def _del(path: tuple) -> Mutation:
    def mutate(b: Path, m: dict) -> None:
        node = m
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]
    return mutate


def _array(key_of: Callable[[dict], str], edit: Callable[[np.ndarray], np.ndarray]) -> Mutation:
    def mutate(b: Path, m: dict) -> None:
        key = key_of(m)
        rewrite_array(b, m, key, edit(read_array(b, m, key).copy()))
    return mutate


def _at(a: np.ndarray, index: int, value: object) -> np.ndarray:
    a.reshape(-1)[index] = value
    return a


def _swap_host_shape(b: Path, m: dict) -> None:
    key = m["host"]["semseg"]["encoder.pos_embed"]
    m["arrays"][key]["shape"] = list(reversed(m["arrays"][key]["shape"]))


def _unsorted_row(b: Path, m: dict) -> None:
    te = _te(m)
    ptr, idx = read_array(b, m, te["dw_indptr"]), read_array(b, m, te["dw_indices"]).copy()
    row = int(np.flatnonzero(np.diff(ptr) >= 2)[0])
    k = int(ptr[row])
    idx[k + 1] = idx[k]  # a duplicate column in one row
    rewrite_array(b, m, te["dw_indices"], idx)


def _merge_overflow(b: Path, m: dict) -> None:
    te, s = _te(m), m["sites"][QKV]
    w = read_array(b, m, s["w"])
    ptr, idx = read_array(b, m, te["dw_indptr"]), read_array(b, m, te["dw_indices"])
    vals = read_array(b, m, te["dw_values"]).copy()
    rows = np.repeat(np.arange(ptr.size - 1), np.diff(ptr))
    k = int(np.flatnonzero(w[rows, idx] != 0)[0])
    vals[k] = 127 if w[rows[k], idx[k]] > 0 else -128
    rewrite_array(b, m, te["dw_values"], vals)


def _symlink_out(b: Path, m: dict) -> None:
    f = array_file(b, m, m["sites"][0]["w"])
    outside = b.parent / "outside.bin"
    outside.write_bytes(f.read_bytes())
    f.unlink()
    f.symlink_to(outside)


def _extra_file(b: Path, m: dict) -> None:
    (b / "arrays" / "stray.bin").write_bytes(b"\0")


def _truncate(b: Path, m: dict) -> None:
    f = array_file(b, m, m["sites"][0]["w"])
    f.write_bytes(f.read_bytes()[:-3])


def _flip(b: Path, m: dict) -> None:
    f = array_file(b, m, _te(m)["dw_values"])
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x10
    f.write_bytes(bytes(data))


def _unreferenced(b: Path, m: dict) -> None:
    m["arrays"]["spare"] = dict(m["arrays"][m["sites"][0]["s_w"]], file="arrays/spare.bin")
    (b / "arrays" / "spare.bin").write_bytes(array_file(b, m, m["sites"][0]["s_w"]).read_bytes())


W0 = r"arrays/sites/patch_embed/w\.bin"
# check (the docs table's first column) -> [(mutation, regex the message must match at its end)]
CASES: dict[str, list[tuple[Mutation, str]]] = {
    "manifest-file": [(lambda b, m: (b / MANIFEST).unlink() or "raw", r"manifest\.yaml: missing file \(manifest\)")],
    "utf-8": [(_raw(b"format: \xff\xfe"), r"manifest\.yaml: not UTF-8 text \(byte 8: b'\\xff'\)")],
    "yaml": [(_raw(b"sites: [\n"), r"manifest\.yaml: not valid YAML: .*"),
             (_raw(b"- 1\n- 2\n"), r"manifest\.yaml: \(top level\): must be a mapping, got 'list'")],
    "identity": [(_set(("schema_version",), 2), r"schema_version: this loader reads 1, got 2"),
                 (_set(("format",), "zip"), r"format: this loader reads 'deltamtl-bundle', got 'zip'"),
                 (_set(("contract_version",), True), r"contract_version: this loader reads 1, got True")],
    "required": [(_del(("policy", "key_offset")), r"manifest\.yaml: policy\.key_offset: missing field")],
    "unknown-key": [(_set(("model", "dropout"), 0.1), r"model\.dropout: unknown field \(not in the schema\), got 0\.1")],
    "strict-types": [
        (_set(("policy", "thresholds", DEPTH), [2, 2.5]), r"policy\.thresholds\.depth\[1\]: Input should be a valid integer, got 2\.5"),
        (_set(("policy", "thresholds", DEPTH), ["3", 2]), r"policy\.thresholds\.depth\[0\]: Input should be a valid integer, got '3'"),
        (_set(("policy", "thresholds", DEPTH), [True, 2]), r"policy\.thresholds\.depth\[0\]: Input should be a valid integer, got True"),
        (_set(("policy", "boundaries", DEPTH), 1.5), r"policy\.boundaries\.depth: Input should be a valid integer, got 1\.5"),
        (_set(("model", "depth"), 2.5), r"model\.depth: Input should be a valid integer, got 2\.5"),
        (_set(("arrays", "sites/patch_embed/w", "shape"), ["24", 48]), r"arrays\['sites/patch_embed/w'\]\.shape\[0\]: Input should be a valid integer, got '24'"),
        (_set(("arrays", "sites/patch_embed/w", "bytes"), 1152.0), r"arrays\['sites/patch_embed/w'\]\.bytes: Input should be a valid integer, got 1152\.0"),
        (_set(("arrays", "sites/patch_embed/w", "dtype"), 8), r"arrays\['sites/patch_embed/w'\]\.dtype: Input should be .*, got 8"),
        (_set(("arrays", "sites/patch_embed/w", "file"), ["arrays"]), r"arrays\['sites/patch_embed/w'\]\.file: Input should be a valid string, got \['arrays'\]"),
    ],
    "ranges": [(_set(("model", "patch_size"), 0), r"model\.patch_size: Input should be greater than or equal to 1, got 0"),
               (_set(("sites", 2, "s_x"), float("nan")), r"sites\[2\]\.s_x: Input should be a finite number, got nan"),
               (_set(("sites", 2, "tasks", "semseg", "s_y"), -0.5), r"sites\[2\]\.tasks\.semseg\.s_y: Input should be greater than 0, got -0\.5")],
    "patch-size": [(_set(("model", "patch_size"), 3), r"model\.patch_size: must divide img_size 16, got 3")],
    "heads": [(_set(("model", "num_heads"), 5), r"model\.num_heads: must divide embed_dim 24, got 5")],
    "tasks": [(_set(("tasks", 2), "albedo"), rf"tasks\[2\]: unknown task \(known: {', '.join(TASKS)}\), got 'albedo'"),
              (_set(("tasks", 3), DEPTH), r"tasks\[3\]: task listed twice, got 'depth'"),
              (_set(("tasks",), ["depth", "semseg", "normals", "edges"]), r"tasks\[0\]: the base task 'semseg' must come first, got 'depth'"),
              (_set(("base_task",), DEPTH), r"base_task: must be 'semseg', got 'depth'")],
    "site-order": [(lambda b, m: m["sites"].pop(), r"sites: a depth-2 model has 9 sites, got '8 entries'"),
                   (lambda b, m: m["sites"].insert(1, m["sites"].pop(2)), r"sites\[1\]: expected layer 0 site 'attn\.qkv' \(execution order\), got \(0, 'attn\.proj'\)"),
                   (_set(("sites", 1, "name"), "qkv"), r"sites\[1\]\.name: must be 'blocks\.0\.attn\.qkv' \(layer 0, site 'attn\.qkv'\), got 'qkv'")],
    "site-dims": [(_set(("sites", 3, "out_dim"), 40), r"sites\[3\]\.out_dim: the model section gives 48, got 40")],
    "site-tasks": [(_del(("sites", 4, "tasks", "edges")), r"sites\[4\]\.tasks: must list \['semseg', 'depth', 'normals', 'edges'\] in this order, got \['semseg', 'depth', 'normals'\]")],
    "delta-fields": [(_del(("sites", QKV, "tasks", DEPTH, "db")), r"sites\[1\]\.tasks\.depth\.db: missing field \(the delta fields .*\), got None"),
                     (lambda b, m: [_te(m).pop(f) for f in ("nnz_dw", "density_dw", "dw_indptr", "dw_indices", "dw_values", "db")],
                      r"sites\[1\]\.tasks\.depth\.nnz_dw: a sub-task needs the delta fields, got None")],
    "density": [(lambda b, m: _te(m).update(density_dw=0.5), r"sites\[1\]\.tasks\.depth\.density_dw: nnz_dw / \(O\*I\) is .*, got 0\.5")],
    "host-params": [(_del(("host", DEPTH, "heads.depth.out.bias")), r"host\.depth\['heads\.depth\.out\.bias'\]: missing host parameter \(the runner uses it\), got None"),
                    (lambda b, m: m["host"].update(normals=m["host"].pop("normals")) or m["host"].update(edges=m["host"].pop("edges")) or m["host"]["edges"].update({"heads.edges.gate": "x"}),
                     r"host\.edges\['heads\.edges\.gate'\]: not a host parameter of this model, got 'x'")],
    "host-shape": [(_swap_host_shape, r"arrays\['host/semseg/encoder\.pos_embed'\]\.shape: host\.semseg\['encoder\.pos_embed'\] must be \[1, 16, 24\], got \[24, 16, 1\]")],
    "policy": [(_set(("policy", "key_offset"), 5), r"policy\.key_offset: must be in \[0, keyframe_interval 5\), got 5"),
               (_set(("policy", "thresholds", "albedo"), [1, 1]), r"policy\.thresholds\.albedo: not a task of this bundle .*, got \[1, 1\]"),
               (_set(("policy", "boundaries", "semseg"), 0), r"policy\.boundaries\.semseg: not a sub-task of this bundle .*, got 0"),
               (_set(("policy", "thresholds", DEPTH), [1, 2, 3]), r"policy\.thresholds\.depth: needs 2 values \(one per block\), got \[1, 2, 3\]"),
               (_set(("policy", "thresholds", DEPTH), [1, 256]), r"policy\.thresholds\.depth\[1\]: Input should be less than or equal to 255, got 256"),
               (_set(("policy", "boundaries", DEPTH), 2), r"policy\.boundaries\.depth: must be in \[-1, 2\), got 2")],
    "index-key": [(_set(("sites", 0, "bias"), "nowhere"), r"sites\[0\]\.bias: array key not in the array index, got 'nowhere'")],
    "index-dtype": [(_set(("arrays", "sites/patch_embed/bias", "dtype"), "<u2"), r"arrays\['sites/patch_embed/bias'\]\.dtype: sites\[0\]\.bias must be '<i4', got '<u2'")],
    "index-shape": [(_set(("arrays", "sites/patch_embed/bias", "shape"), [7]), r"arrays\['sites/patch_embed/bias'\]\.shape: sites\[0\]\.bias must be \[24\], got \[7\]")],
    "index-bytes": [(_set(("arrays", "sites/patch_embed/bias", "bytes"), 95), r"arrays\['sites/patch_embed/bias'\]\.bytes: <i4\[24\] is 96 bytes, got 95")],
    "index-unused": [(_unreferenced, r"arrays\.spare: listed but referenced by no field, got 'arrays/spare\.bin'")],
    "index-file": [(_set(("arrays", "sites/patch_embed/w", "file"), "arrays/../../x.bin"), r"arrays\['sites/patch_embed/w'\]\.file: must be a relative path arrays/\.\.\.\.bin inside the bundle, got 'arrays/\.\./\.\./x\.bin'"),
                   (_set(("arrays", "sites/patch_embed/w", "file"), "/etc/passwd"), r"\.file: must be a relative path .*, got '/etc/passwd'"),
                   (_set(("arrays", "sites/patch_embed/w", "file"), "arrays/sites/patch_embed/bias.bin"), r"arrays\['sites/patch_embed/bias'\]\.file: also the file of arrays\['sites/patch_embed/w'\], got 'arrays/sites/patch_embed/bias\.bin'")],
    "core-limits": [(_set(("core_limits", "token_rows"), 3), r"core_limits: CoreLimits\.token_rows=3 must be a power of two <= 64, got \{.*"),
                    (_set(("core_limits", "max_out"), 60), r"core_limits\.max_out: below the model's 72, got 60"),
                    (_del(("core_limits", "token_rows")), r"core_limits\.token_rows: missing field")],
    "file-missing": [(lambda b, m: array_file(b, m, m["sites"][0]["w"]).unlink(), rf"{W0}: missing file \(array sites/patch_embed/w, field sites\[0\]\.w\)")],
    "file-inside": [(_symlink_out, rf"{W0}: sites\[0\]\.w: file resolves outside the bundle, to '.*outside\.bin'")],
    "file-unnamed": [(_extra_file, r"arrays/stray\.bin: not named by the array index \(.*manifest\.yaml: arrays\)")],
    "file-size": [(_truncate, rf"{W0}: sites\[0\]\.w: 1149 bytes, \|i1\[24, 48\] needs 1152 \(truncated or padded\)")],
    "sha256": [(_flip, r"dw_values\.bin: sites\[1\]\.tasks\.depth\.dw_values: sha256 mismatch \(file corrupted\), got [0-9a-f]{16}\.\.\.")],
    "s_w": [(_array(lambda m: m["sites"][2]["s_w"], lambda a: _at(a, 3, -0.25)), r"s_w\.bin: sites\[2\]\.s_w\[3\]: must be a positive finite scale, got -0\.25"),
            (_array(lambda m: m["sites"][2]["s_w"], lambda a: _at(a, 0, np.inf)), r"s_w\.bin: sites\[2\]\.s_w\[0\]: must be a positive finite scale, got inf")],
    "requant": [(_array(lambda m: _te(m, 2, "semseg")["req_mult"], lambda a: _at(a, 1, 40000)), r"req_mult\.bin: sites\[2\]\.tasks\.semseg\.req_mult\[1\]: above 32767, got 40000"),
                (_array(lambda m: _te(m, 2, "semseg")["req_shift"], lambda a: _at(a, 2, 0)), r"req_shift\.bin: sites\[2\]\.tasks\.semseg\.req_shift\[2\]: outside \[1, 46\], got 0")],
    "csr-pointers": [(_array(lambda m: _te(m)["dw_indptr"], lambda a: _at(a, 0, 1)), r"dw_indptr\.bin: sites\[1\]\.tasks\.depth\.dw_indptr\[0\]: must be 0, got 1"),
                     (_array(lambda m: _te(m)["dw_indptr"], lambda a: _at(a, 5, -1)), r"dw_indptr\.bin: sites\[1\]\.tasks\.depth\.dw_indptr\[5\]: below row 4's \d+ \(not monotone\), got -1"),
                     (_array(lambda m: _te(m)["dw_indptr"], lambda a: _at(a, -1, a[-1] - 1)), r"dw_indptr\.bin: sites\[1\]\.tasks\.depth\.dw_indptr\[72\]: must be nnz_dw \d+, got \d+")],
    "csr-columns": [(_array(lambda m: _te(m)["dw_indices"], lambda a: _at(a, 1, 24)), r"dw_indices\.bin: sites\[1\]\.tasks\.depth\.dw_indices\[1\]: out of range \[0, 24\), got 24")],
    "csr-rows": [(_unsorted_row, r"dw_indices\.bin: sites\[1\]\.tasks\.depth\.dw_indices\[\d+\]: duplicate column in its row \(columns must strictly increase, previous \d+\), got \d+")],
    "int8-merge": [(_merge_overflow, r"dw_values\.bin: sites\[1\]\.tasks\.depth\.dw_values: W_b \+ dW leaves int8 \[-128, 127\] at \[\d+, \d+\], got -?\d+")],
    "host-finite": [(_array(lambda m: m["host"][DEPTH]["encoder.norm.weight"], lambda a: _at(a, 4, np.nan)), r"encoder\.norm\.weight\.bin: host\.depth\['encoder\.norm\.weight'\]\[4\]: must be finite, got nan")],
    "pixel-stats": [(_array(lambda m: m["host"]["semseg"]["pixel_std"], lambda a: a * 2), r"pixel_std\.bin: host\.semseg\.pixel_std: differs from model\.pixel_std \[.*\], got \[.*\]")],
}


def _doc_checks() -> list[str]:
    text = DOC.read_text()
    section = text[text.index("## What the loader checks"):]
    return re.findall(r"^\| `([a-z0-9_-]+)` \|", section, flags=re.M)


def test_docs_table_and_cases_agree() -> None:
    assert _doc_checks() == list(CASES)


@pytest.mark.parametrize("check,n", [(c, n) for c, cases in CASES.items() for n in range(len(cases))])
def test_check_refuses_with_file_field_value(check: str, n: int, valid_bundle: Path,
                                             valid_manifest_blob: bytes, tmp_path: Path) -> None:
    mutate, pattern = CASES[check][n]
    b = copy_bundle(valid_bundle, tmp_path / "bundle")
    m = pickle.loads(valid_manifest_blob)
    if mutate(b, m) != "raw":
        save_manifest(b, m)
    with pytest.raises(BundleError) as err:
        load_bundle(b)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(b)), msg
    assert re.search(pattern + "$", msg), msg


def test_valid_bundle_loads(valid_bundle: Path) -> None:
    qm = load_bundle(valid_bundle)
    assert qm.tasks == TASKS and rng("unused") is not None
