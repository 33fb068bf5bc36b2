"""Export bundle of a quantised multi-task model: writer and validating loader.

A bundle is a directory (schema in docs/export-format.md)::

    manifest.yaml            schema version, contract version, model config, tasks,
                             core_limits, reuse policy, site list (scales, array keys),
                             host parameters, and the array index
    arrays/<key>.bin         raw little-endian arrays, one per index entry

Site arrays: dense int8 base weights ``w`` [O, I], int32 base bias ``bias`` [O], float64
weight scales ``s_w`` [O]; per task uint16 ``req_mult`` / uint8 ``req_shift`` [O]; per
sub-task the delta weights as CSR over output rows (``dw_indptr`` int32 [O+1],
``dw_indices`` uint16 [nnz], ``dw_values`` int8 [nnz]: ``scipy.sparse.csr_matrix((values,
indices, indptr), shape=(O, I))`` reads them as they are) and the int32 bias delta ``db``.
Host parameters (LayerNorms, position embedding, pixel statistics, heads) are float32.

The writer builds the bundle in a temporary sibling directory and renames it into place.
The loader refuses anything inconsistent -- wrong schema version, missing manifest fields
or files, truncated arrays, checksum mismatches, wrong dtype or shape, non-monotone row
pointers, column indices out of range, W_b + dW outside int8 -- with a
:class:`BundleError` naming the file and the field.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from deltamtl.contract.formats import (
    CONTRACT_VERSION,
    CSR_INDEX_DTYPE,
    CSR_INDPTR_DTYPE,
    CSR_VALUE_DTYPE,
    REQ_MULT_MAX,
    REQ_SHIFT_MAX,
    REQ_SHIFT_MIN,
    WEIGHT_MAX,
    WEIGHT_MIN,
)
from deltamtl.contract.jobs import CsrDelta
from deltamtl.contract.limits import LIMIT_FIELDS, TINY_LIMITS, CoreLimits
from deltamtl.model.export.quantized_model import QuantizedModel, ReusePolicy, SiteParams
from deltamtl.model.tasks import site_order

SCHEMA_VERSION = 1
FORMAT = "deltamtl-bundle"
MANIFEST = "manifest.yaml"
LIMIT_KEYS = LIMIT_FIELDS
ARRAY_DIR = "arrays"

# field -> little-endian dtype the loader insists on
DTYPES: dict[str, np.dtype] = {
    "w": np.dtype("i1"),
    "bias": np.dtype("<i4"),
    "s_w": np.dtype("<f8"),
    "req_mult": np.dtype("<u2"),
    "req_shift": np.dtype("u1"),
    "dw_indptr": CSR_INDPTR_DTYPE,
    "dw_indices": CSR_INDEX_DTYPE,
    "dw_values": CSR_VALUE_DTYPE,
    "db": np.dtype("<i4"),
    "host": np.dtype("<f4"),
}


class BundleError(ValueError):
    """A bundle is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class ArrayEntry:
    key: str
    file: str
    dtype: str
    shape: tuple[int, ...]
    sha256: str
    nbytes: int


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------
class _ArrayWriter:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.index: dict[str, dict[str, Any]] = {}
        self._by_digest: dict[tuple[str, str, tuple[int, ...]], str] = {}
        (root / ARRAY_DIR).mkdir(parents=True)

    def add(self, key: str, array: np.ndarray, dtype: np.dtype, dedup: bool = False) -> str:
        a = np.ascontiguousarray(np.asarray(array).astype(dtype, casting="unsafe"))
        data = a.tobytes()
        digest = _sha256(data)
        ident = (digest, a.dtype.str, tuple(a.shape))
        if dedup and ident in self._by_digest:
            return self._by_digest[ident]
        if key in self.index:
            raise ValueError(f"array key {key!r} written twice")
        rel = f"{ARRAY_DIR}/{key}.bin"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.index[key] = {"file": rel, "dtype": a.dtype.str, "shape": [int(s) for s in a.shape],
                           "sha256": digest, "bytes": len(data)}
        self._by_digest[ident] = key
        return key


def _check_int8_merge(sp: SiteParams) -> None:
    for task in sp.dw:
        merged = sp.task_weight(task)
        if merged.min() < WEIGHT_MIN or merged.max() > WEIGHT_MAX:
            raise ValueError(f"site {sp.name} task {task}: W_b + dW leaves int8")


def write_bundle(qm: QuantizedModel, out_dir: str | Path, lanes: int = TINY_LIMITS.lanes,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``qm`` as a bundle at ``out_dir`` (atomically: temp dir, then rename)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        arrays = _ArrayWriter(tmp)
        sites = []
        for sp in qm.sites:
            _check_int8_merge(sp)
            pre = f"sites/{sp.name}"
            entry: dict[str, Any] = {
                "name": sp.name, "layer": sp.layer, "site": sp.site,
                "in_dim": sp.in_dim, "out_dim": sp.out_dim, "s_x": float(sp.s_x),
                "w": arrays.add(f"{pre}/w", sp.w, DTYPES["w"]),
                "bias": arrays.add(f"{pre}/bias", sp.bias, DTYPES["bias"]),
                "s_w": arrays.add(f"{pre}/s_w", sp.s_w, DTYPES["s_w"]),
                "tasks": {},
            }
            for task in qm.tasks:
                if task not in sp.req_mult:
                    continue
                te: dict[str, Any] = {
                    "s_y": float(sp.s_y[task]),
                    "req_mult": arrays.add(f"{pre}/{task}/req_mult", sp.req_mult[task], DTYPES["req_mult"]),
                    "req_shift": arrays.add(f"{pre}/{task}/req_shift", sp.req_shift[task], DTYPES["req_shift"]),
                }
                if task in sp.dw:
                    dw = sp.dw[task]
                    te["nnz_dw"] = dw.nnz
                    te["density_dw"] = dw.nnz / float(sp.out_dim * sp.in_dim)
                    for f, a in (("dw_indptr", dw.indptr), ("dw_indices", dw.indices),
                                 ("dw_values", dw.values)):
                        te[f] = arrays.add(f"{pre}/{task}/{f}", a, DTYPES[f])
                    te["db"] = arrays.add(f"{pre}/{task}/db", sp.db[task], DTYPES["db"])
                entry["tasks"][task] = te
            sites.append(entry)
        host = {}
        for task in qm.tasks:  # identical arrays (shared embeddings) are stored once
            host[task] = {name: arrays.add(f"host/{task}/{name}", a, DTYPES["host"], dedup=True)
                          for name, a in sorted(qm.host[task].items())}
        limits = qm.core_limits(lanes, TINY_LIMITS.token_rows)
        pol = qm.policy
        manifest = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "contract_version": CONTRACT_VERSION,
            "model": dict(qm.mcfg),
            "tasks": list(qm.tasks),
            "base_task": qm.base,
            "core_limits": {f: getattr(limits, f) for f in LIMIT_FIELDS},
            "policy": {"keyframe_interval": pol.keyframe_interval, "key_offset": pol.key_offset,
                       "task_reuse": pol.task_reuse,
                       "thresholds": {t: [int(v) for v in ths] for t, ths in pol.thresholds.items()},
                       "boundaries": {t: int(b) for t, b in pol.boundaries.items()}},
            "sites": sites,
            "host": host,
            "arrays": arrays.index,
            "extra": dict(extra or {}),
        }
        (tmp / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is meant to be shared
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an existing bundle is swapped out, then removed."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    old.rmdir()
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, root: Path, index: Any, verify: bool) -> None:
        self.root = root
        self.verify = verify
        self.mpath = root / MANIFEST
        if not isinstance(index, dict):
            raise BundleError(f"{self.mpath}: arrays: must be a mapping, got {type(index).__name__}")
        self.index = index
        self.used: set[str] = set()

    def get(self, key: Any, field: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(key, str) or key not in self.index:
            raise BundleError(f"{self.mpath}: {field}: array key {key!r} not in the array index")
        ent = self.index[key]
        where = f"{self.mpath}: arrays.{key}"
        for f in ("file", "dtype", "shape", "sha256", "bytes"):
            if not isinstance(ent, dict) or f not in ent:
                raise BundleError(f"{where}: missing field {f!r}")
        if np.dtype(ent["dtype"]) != dtype:
            raise BundleError(f"{where}: dtype {ent['dtype']!r}, {field} must be {dtype.str!r}")
        if tuple(ent["shape"]) != tuple(shape):
            raise BundleError(f"{where}: shape {tuple(ent['shape'])}, {field} must be {tuple(shape)}")
        rel = Path(ent["file"])
        if rel.is_absolute() or ".." in rel.parts:
            raise BundleError(f"{where}: file {ent['file']!r} is outside the bundle")
        path = self.root / rel
        if not path.is_file():
            raise BundleError(f"{path}: missing file (array {key}, field {field})")
        data = path.read_bytes()
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if len(data) != expected or int(ent["bytes"]) != expected:
            raise BundleError(f"{path}: {len(data)} bytes, field {field} {dtype.str}{list(shape)} "
                              f"needs {expected} (truncated or padded)")
        if self.verify and _sha256(data) != ent["sha256"]:
            raise BundleError(f"{path}: sha256 mismatch for field {field} (file corrupted)")
        self.used.add(key)
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def _need(m: Mapping, key: str, where: str, types: type | tuple[type, ...]) -> Any:
    if not isinstance(m, Mapping) or key not in m:
        raise BundleError(f"{where}: missing field {key!r}")
    v = m[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise BundleError(f"{where}.{key}: expected {types}, got bool")
    if not isinstance(v, types):
        raise BundleError(f"{where}.{key}: expected {types}, got {type(v).__name__} {v!r}")
    return v


def read_manifest(path: str | Path) -> dict:
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing file (manifest)")
    try:
        manifest = yaml.safe_load(mpath.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BundleError(f"{mpath}: invalid YAML: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{mpath}: top level must be a mapping")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{mpath}: format: {manifest.get('format')!r}, expected {FORMAT!r}")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{mpath}: schema_version: {version!r}, this loader reads {SCHEMA_VERSION}")
    cv = manifest.get("contract_version")
    if cv != CONTRACT_VERSION:
        raise BundleError(f"{mpath}: contract_version: {cv!r}, this code implements {CONTRACT_VERSION}")
    return manifest


def _check_csr(where: str, indptr: np.ndarray, indices: np.ndarray, in_dim: int) -> None:
    if indptr[0] != 0:
        raise BundleError(f"{where}.dw_indptr: starts at {int(indptr[0])}, must start at 0")
    steps = np.diff(indptr.astype(np.int64))
    if np.any(steps < 0):
        row = int(np.flatnonzero(steps < 0)[0])
        raise BundleError(f"{where}.dw_indptr: not monotone at row {row}")
    if int(indptr[-1]) != indices.size:
        raise BundleError(f"{where}.dw_indptr: ends at {int(indptr[-1])}, nnz is {indices.size}")
    if indices.size and int(indices.max()) >= in_dim:
        pos = int(np.flatnonzero(indices.astype(np.int64) >= in_dim)[0])
        raise BundleError(f"{where}.dw_indices: index {int(indices[pos])} at {pos} out of range "
                          f"[0, {in_dim})")


def load_bundle(path: str | Path, verify_checksums: bool = True) -> QuantizedModel:
    """Read and validate a bundle; raises :class:`BundleError` naming file and field."""
    root = Path(path)
    manifest = read_manifest(root)
    mpath = root / MANIFEST
    where = str(mpath)
    mcfg = _need(manifest, "model", where, dict)
    for k in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "ln_eps", "head_channels"):
        _need(mcfg, k, f"{where}: model", (int, float))
    tasks = tuple(_need(manifest, "tasks", where, list))
    reader = _Reader(root, _need(manifest, "arrays", where, dict), verify_checksums)
    depth = int(mcfg["depth"])
    sites_m = _need(manifest, "sites", where, list)
    expected_order = [(s, layer) for layer, s in site_order(depth)]  # site_order names layer -1 EMBED
    if len(sites_m) != len(expected_order):
        raise BundleError(f"{where}: sites: {len(sites_m)} entries, a depth-{depth} model has "
                          f"{len(expected_order)}")
    sites: list[SiteParams] = []
    for n, ent in enumerate(sites_m):
        sw = f"{where}: sites[{n}]"
        layer = _need(ent, "layer", sw, int)
        site = _need(ent, "site", sw, str)
        if (site, layer) != expected_order[n]:
            raise BundleError(f"{sw}: site {site!r} layer {layer}, expected {expected_order[n]}")
        sw = f"{where}: sites[{n}] ({ent.get('name')})"
        i, o = _need(ent, "in_dim", sw, int), _need(ent, "out_dim", sw, int)
        s_x = float(_need(ent, "s_x", sw, (int, float)))
        if not (np.isfinite(s_x) and s_x > 0):
            raise BundleError(f"{sw}.s_x: must be a positive finite scale, got {s_x!r}")
        sp = SiteParams(layer=layer, site=site, s_x=s_x,
                        s_w=reader.get(ent.get("s_w"), f"{sw}.s_w", DTYPES["s_w"], (o,)),
                        w=reader.get(ent.get("w"), f"{sw}.w", DTYPES["w"], (o, i)),
                        bias=reader.get(ent.get("bias"), f"{sw}.bias", DTYPES["bias"], (o,)))
        tmap = _need(ent, "tasks", sw, dict)
        for task in tasks if layer >= 0 else tasks[:1]:
            tw = f"{sw}.tasks.{task}"
            te = _need(tmap, task, f"{sw}.tasks", dict)
            sp.s_y[task] = float(_need(te, "s_y", tw, (int, float)))
            if not (np.isfinite(sp.s_y[task]) and sp.s_y[task] > 0):
                raise BundleError(f"{tw}.s_y: must be a positive finite scale")
            mult = reader.get(te.get("req_mult"), f"{tw}.req_mult", DTYPES["req_mult"], (o,))
            shift = reader.get(te.get("req_shift"), f"{tw}.req_shift", DTYPES["req_shift"], (o,))
            if mult.max(initial=0) > REQ_MULT_MAX:
                raise BundleError(f"{tw}.req_mult: value above {REQ_MULT_MAX}")
            if np.any((shift < REQ_SHIFT_MIN) | (shift > REQ_SHIFT_MAX)):
                raise BundleError(f"{tw}.req_shift: value outside [{REQ_SHIFT_MIN}, {REQ_SHIFT_MAX}]")
            sp.req_mult[task], sp.req_shift[task] = mult, shift
            if task == tasks[0]:
                continue
            nnz = _need(te, "nnz_dw", tw, int)
            indptr = reader.get(te.get("dw_indptr"), f"{tw}.dw_indptr", DTYPES["dw_indptr"], (o + 1,))
            indices = reader.get(te.get("dw_indices"), f"{tw}.dw_indices", DTYPES["dw_indices"], (nnz,))
            values = reader.get(te.get("dw_values"), f"{tw}.dw_values", DTYPES["dw_values"], (nnz,))
            _check_csr(tw, indptr, indices, i)
            sp.dw[task] = CsrDelta(indptr, indices, values)
            sp.db[task] = reader.get(te.get("db"), f"{tw}.db", DTYPES["db"], (o,))
            merged = sp.task_weight(task)
            if merged.min() < WEIGHT_MIN or merged.max() > WEIGHT_MAX:
                raise BundleError(f"{tw}.dw_values: W_b + dW leaves int8 [{WEIGHT_MIN}, {WEIGHT_MAX}]")
        sites.append(sp)
    host_m = _need(manifest, "host", where, dict)
    host: dict[str, dict[str, np.ndarray]] = {}
    for task in tasks:
        entries = _need(host_m, task, f"{where}: host", dict)
        host[task] = {}
        for name, key in entries.items():
            ent = reader.index.get(key) if isinstance(key, str) else None
            if not isinstance(ent, dict) or "shape" not in ent:
                raise BundleError(f"{where}: host.{task}.{name}: array key {key!r} not in the array index")
            host[task][name] = reader.get(key, f"host.{task}.{name}", DTYPES["host"],
                                          tuple(int(s) for s in ent["shape"]))
    policy = _policy(_need(manifest, "policy", where, dict), depth, where)
    try:
        qm = QuantizedModel(mcfg=mcfg, tasks=tasks, sites=sites, host=host, policy=policy)
    except ValueError as exc:
        raise BundleError(f"{where}: tasks: {exc}") from exc
    unused = sorted(set(reader.index) - reader.used)
    if unused:
        raise BundleError(f"{where}: arrays.{unused[0]}: listed but referenced by no field")
    lim = _need(manifest, "core_limits", where, dict)
    try:
        declared = CoreLimits(**{k: _need(lim, k, f"{where}: core_limits", int)
                                 for k in LIMIT_KEYS})
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{where}: core_limits: {exc}") from exc
    need = qm.core_limits(declared.lanes, declared.token_rows)
    for k in ("max_tokens", "max_in", "max_out", "max_nnz_dw", "max_weights"):
        if getattr(declared, k) < getattr(need, k):
            raise BundleError(f"{where}: core_limits.{k}: {getattr(declared, k)} is below the "
                              f"model's {getattr(need, k)}")
    return qm


def _policy(p: Mapping, depth: int, where: str) -> ReusePolicy:
    try:
        return ReusePolicy(
            depth=depth,
            keyframe_interval=_need(p, "keyframe_interval", f"{where}: policy", int),
            key_offset=_need(p, "key_offset", f"{where}: policy", int),
            task_reuse=_need(p, "task_reuse", f"{where}: policy", bool),
            thresholds={t: [int(v) for v in ths] for t, ths in _need(p, "thresholds", f"{where}: policy", dict).items()},
            boundaries={t: int(b) for t, b in _need(p, "boundaries", f"{where}: policy", dict).items()},
        )
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{where}: policy: {exc}") from exc


def core_limits_of(path: str | Path) -> CoreLimits:
    """The manifest's core_limits (what ``deltamtl.contract.codegen --params`` reads)."""
    lim = read_manifest(path)["core_limits"]
    return CoreLimits(**{k: int(lim[k]) for k in LIMIT_KEYS})


# ---------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------
def bundle_summary(path: str | Path) -> dict[str, Any]:
    """Sites, delta densities and storage of a bundle (read from the manifest alone)."""
    m = read_manifest(path)
    arrays = m["arrays"]
    storage: dict[str, int] = {}
    for key, ent in arrays.items():
        kind = "host_f32" if key.startswith("host/") else key.rsplit("/", 1)[-1]
        storage[kind] = storage.get(kind, 0) + int(ent["bytes"])
    sites = []
    for s in m["sites"]:
        row = {"name": s["name"], "in": s["in_dim"], "out": s["out_dim"], "s_x": s["s_x"],
               "density_dw": {t: e["density_dw"] for t, e in s["tasks"].items() if "density_dw" in e}}
        sites.append(row)
    total = sum(storage.values())
    per_task_dw = {}
    for t in m["tasks"][1:]:
        nnz = sum(s["tasks"][t]["nnz_dw"] for s in m["sites"] if t in s["tasks"] and "nnz_dw" in s["tasks"][t])
        numel = sum(s["in_dim"] * s["out_dim"] for s in m["sites"] if s["layer"] >= 0)
        per_task_dw[t] = {"nnz": nnz, "density": nnz / numel if numel else 0.0}
    return {"path": str(path), "schema_version": m["schema_version"], "tasks": m["tasks"],
            "n_sites": len(sites), "sites": sites, "core_limits": m["core_limits"],
            "policy": m["policy"], "storage_bytes": storage, "total_bytes": total,
            "dw": per_task_dw}


def format_summary(s: Mapping[str, Any]) -> str:
    lines = [f"bundle {s['path']} (schema {s['schema_version']}): tasks {', '.join(s['tasks'])}, "
             f"{s['n_sites']} sites, {s['total_bytes'] / 1024:.1f} KiB",
             f"core_limits {s['core_limits']}",
             f"policy K={s['policy']['keyframe_interval']} offset={s['policy']['key_offset']} "
             f"boundaries={s['policy']['boundaries']}"]
    for t, d in s["dw"].items():
        lines.append(f"  dW {t:8s} nnz {d['nnz']:8d}  density {d['density']:.4f}")
    lines.append("  storage: " + ", ".join(f"{k} {v}" for k, v in sorted(s["storage_bytes"].items())))
    lines.append(f"  {'site':24s} {'in':>5s} {'out':>5s} {'s_x':>10s}  dW density per sub-task")
    for r in s["sites"]:
        dens = " ".join(f"{t}={v:.3f}" for t, v in r["density_dw"].items())
        lines.append(f"  {r['name']:24s} {r['in']:5d} {r['out']:5d} {r['s_x']:10.4g}  {dens}")
    return "\n".join(lines)
