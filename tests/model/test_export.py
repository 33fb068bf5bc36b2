"""Export bundle: round trip, scipy-readable CSR, atomic writes, and refusal of bad bundles."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml
from deltamtl.contract.limits import LIMIT_FIELDS
from deltamtl.host.runner import GoldenRunner
from deltamtl.model.export.bundle import (
    MANIFEST,
    BundleError,
    bundle_summary,
    core_limits_of,
    format_summary,
    load_bundle,
    write_bundle,
)
from deltamtl.model.export.quantized_model import QuantizedModel
from deltamtl.model.quant.assemble import random_multitask
from deltamtl.model.quant.quantizer import Quantizer

from tests.helpers.seeding import SEED

pytestmark = pytest.mark.quant  # make test-quant

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def qm() -> QuantizedModel:
    q = Quantizer(random_multitask(SEED))
    q.calibrate([torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(SEED))])
    return q.to_quantized()


@pytest.fixture()
def bundle(qm: QuantizedModel, tmp_path: Path) -> Path:
    return write_bundle(qm, tmp_path / "bundle")


def _manifest(path: Path) -> dict:
    return yaml.safe_load((path / MANIFEST).read_text())


def _save_manifest(path: Path, m: dict) -> None:
    (path / MANIFEST).write_text(yaml.safe_dump(m, sort_keys=False))


def _rewrite_array(path: Path, key: str, array: np.ndarray) -> None:
    """Replace an array's bytes and update its checksum (a semantically bad, well-formed file)."""
    m = _manifest(path)
    data = np.ascontiguousarray(array).tobytes()
    (path / m["arrays"][key]["file"]).write_bytes(data)
    m["arrays"][key]["sha256"] = hashlib.sha256(data).hexdigest()
    _save_manifest(path, m)


def _a_dw_key(path: Path, field: str) -> tuple[str, dict]:
    m = _manifest(path)
    for s in m["sites"]:
        for e in s["tasks"].values():
            if field in e and e.get("nnz_dw", 0) > 2:
                return e[field], s
    raise AssertionError("no sub-task site with deltas")


def test_round_trip_identical_model_and_outputs(qm: QuantizedModel, bundle: Path) -> None:
    back = load_bundle(bundle)
    assert back.tasks == qm.tasks and back.policy == qm.policy
    for a, b in zip(qm.sites, back.sites, strict=True):
        assert a.name == b.name and a.s_x == b.s_x and a.s_y == b.s_y
        np.testing.assert_array_equal(a.w, b.w)
        np.testing.assert_array_equal(a.bias, b.bias)
        np.testing.assert_array_equal(a.s_w, b.s_w)
        for t in a.dw:
            np.testing.assert_array_equal(a.task_weight(t), b.task_weight(t))
            np.testing.assert_array_equal(a.db[t], b.db[t])
            np.testing.assert_array_equal(a.req_mult[t], b.req_mult[t])
    for t in qm.tasks:
        assert qm.host[t].keys() == back.host[t].keys()
        for k in qm.host[t]:
            np.testing.assert_array_equal(qm.host[t][k], back.host[t][k])
    frames = np.random.default_rng(SEED).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    for fa, fb in zip(GoldenRunner(qm).run_clip(frames), GoldenRunner(back).run_clip(frames), strict=True):
        for t in fa:
            np.testing.assert_array_equal(fa[t], fb[t])


def test_csr_arrays_read_by_scipy_as_they_are(qm: QuantizedModel, bundle: Path) -> None:
    m = _manifest(bundle)
    site = next(s for s in m["sites"] if s["layer"] >= 0)
    e = site["tasks"]["depth"]
    arrays = {}
    for f in ("dw_indptr", "dw_indices", "dw_values"):
        ent = m["arrays"][e[f]]
        arrays[f] = np.fromfile(bundle / ent["file"], dtype=np.dtype(ent["dtype"]))
    mat = sp.csr_matrix((arrays["dw_values"], arrays["dw_indices"], arrays["dw_indptr"]),
                        shape=(site["out_dim"], site["in_dim"]))
    dense = qm.site(site["layer"], site["site"]).dw["depth"].to_dense(site["out_dim"], site["in_dim"])
    np.testing.assert_array_equal(mat.toarray(), dense)
    assert m["core_limits"].keys() == set(LIMIT_FIELDS)
    assert m["core_limits"]["max_weights"] == max(s["in_dim"] * s["out_dim"] for s in m["sites"])
    assert core_limits_of(bundle).max_nnz_dw >= mat.nnz


def test_atomic_overwrite_leaves_no_temporaries(qm: QuantizedModel, bundle: Path) -> None:
    write_bundle(qm, bundle)
    assert [p.name for p in bundle.parent.iterdir()] == ["bundle"]
    load_bundle(bundle)


def test_summary_lists_sites_densities_storage(bundle: Path) -> None:
    s = bundle_summary(bundle)
    assert s["n_sites"] == 9 and s["total_bytes"] == sum(s["storage_bytes"].values())
    assert all(0 < d["density"] < 1 for d in s["dw"].values())
    text = format_summary(s)
    assert "blocks.1.mlp.fc2" in text and "density" in text


def test_truncated_array_rejected(bundle: Path) -> None:
    m = _manifest(bundle)
    key = m["sites"][1]["w"]
    f = bundle / m["arrays"][key]["file"]
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(BundleError, match=r"w\.bin.*bytes.*truncated"):
        load_bundle(bundle)


def test_flipped_byte_rejected(bundle: Path) -> None:
    key, _ = _a_dw_key(bundle, "dw_values")
    f = bundle / _manifest(bundle)["arrays"][key]["file"]
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"dw_values\.bin: sites\[\d+\]\.tasks\.\w+\.dw_values: sha256 mismatch"):
        load_bundle(bundle)


def test_index_out_of_range_rejected(bundle: Path) -> None:
    key, site = _a_dw_key(bundle, "dw_indices")
    idx = np.fromfile(bundle / _manifest(bundle)["arrays"][key]["file"], dtype="<u2")
    idx[1] = site["in_dim"]
    _rewrite_array(bundle, key, idx)
    with pytest.raises(BundleError, match=rf"dw_indices\.bin: sites\[\d+\]\.tasks\.\w+\.dw_indices\[1\]: out of range \[0, {site['in_dim']}\), got {site['in_dim']}$"):
        load_bundle(bundle)


def test_non_monotone_indptr_rejected(bundle: Path) -> None:
    key, _ = _a_dw_key(bundle, "dw_indptr")
    ptr = np.fromfile(bundle / _manifest(bundle)["arrays"][key]["file"], dtype="<i4")
    k = int(np.flatnonzero(np.diff(ptr) > 0)[0])
    ptr[k + 1] = ptr[k] - 1 if ptr[k] > 0 else ptr[k + 2] + 1
    _rewrite_array(bundle, key, ptr)
    with pytest.raises(BundleError, match=r"dw_indptr\[\d+\]: (below row \d+'s \d+ \(not monotone\)|must be 0), got"):
        load_bundle(bundle)


def test_merged_weight_outside_int8_rejected(qm: QuantizedModel, bundle: Path) -> None:
    key, site = _a_dw_key(bundle, "dw_values")
    m = _manifest(bundle)
    task = next(t for t, e in site["tasks"].items() if e.get("dw_values") == key)
    vals = np.fromfile(bundle / m["arrays"][key]["file"], dtype="i1").copy()
    sp_ = qm.site(site["layer"], site["site"])
    dw = sp_.dw[task]
    wb = sp_.w[dw.rows(), dw.indices.astype(np.int64)].astype(np.int64)
    k = int(np.flatnonzero(wb != 0)[0])  # a non-zero whose base weight is non-zero
    vals[k] = 127 if wb[k] > 0 else -128  # W_b + dW leaves [-128, 127]
    _rewrite_array(bundle, key, vals)
    with pytest.raises(BundleError, match="W_b \\+ dW leaves int8"):
        load_bundle(bundle)


def test_wrong_version_rejected(bundle: Path) -> None:
    m = _manifest(bundle)
    m["schema_version"] = 99
    _save_manifest(bundle, m)
    with pytest.raises(BundleError, match=r"manifest\.yaml: schema_version: this loader reads 1, got 99$"):
        load_bundle(bundle)


def test_missing_file_rejected(bundle: Path) -> None:
    m = _manifest(bundle)
    key = m["host"]["depth"]["heads.depth.out.weight"]
    (bundle / m["arrays"][key]["file"]).unlink()
    with pytest.raises(BundleError, match=r"out\.weight\.bin: missing file .*host\.depth\['heads\.depth\.out\.weight'\]"):
        load_bundle(bundle)


def test_missing_manifest_and_fields_rejected(bundle: Path) -> None:
    m = _manifest(bundle)
    del m["sites"][2]["tasks"]["edges"]["req_shift"]
    _save_manifest(bundle, m)
    with pytest.raises(BundleError, match=r"manifest\.yaml: sites\[2\]\.tasks\.edges\.req_shift: missing field$"):
        load_bundle(bundle)
    (bundle / MANIFEST).unlink()
    with pytest.raises(BundleError, match="manifest.yaml: missing file"):
        load_bundle(bundle)


def test_wrong_dtype_and_shape_rejected(bundle: Path) -> None:
    m = _manifest(bundle)
    key = m["sites"][3]["bias"]
    m["arrays"][key]["dtype"] = "<i2"
    _save_manifest(bundle, m)
    with pytest.raises(BundleError, match=r"arrays\['sites/blocks\.\d\.mlp\.fc1/bias'\]\.dtype: .*got '<i2'$"):
        load_bundle(bundle)
    m["arrays"][key]["dtype"] = "<i4"
    m["arrays"][key]["shape"] = [7]
    _save_manifest(bundle, m)
    with pytest.raises(BundleError, match=r"arrays\['sites/blocks\.\d\.mlp\.fc1/bias'\]\.shape: sites\[3\]\.bias must be \[\d+\], got \[7\]$"):
        load_bundle(bundle)
