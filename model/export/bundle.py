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
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from deltamtl.contract.errors import UserInputError
from deltamtl.contract.formats import (
    CONTRACT_VERSION,
    REQ_MULT_MAX,
    REQ_SHIFT_MAX,
    REQ_SHIFT_MIN,
    WEIGHT_MAX,
    WEIGHT_MIN,
)
from deltamtl.contract.jobs import CsrDelta
from deltamtl.contract.limits import LIMIT_FIELDS, TINY_LIMITS, CoreLimits
from deltamtl.model.export.manifest_schema import (
    ARRAY_DIR,
    DELTA_ARRAYS,
    DTYPES,
    FORMAT,
    MANIFEST,
    SCHEMA_VERSION,
    Loc,
    Manifest,
    ManifestError,
    format_loc,
    short_repr,
    validate_manifest,
)
from deltamtl.model.export.quantized_model import QuantizedModel, ReusePolicy, SiteParams

__all__ = ["ARRAY_DIR", "DTYPES", "FORMAT", "MANIFEST", "SCHEMA_VERSION", "BundleError",
           "bundle_summary", "core_limits_of", "format_summary", "load_bundle", "read_manifest",
           "recover_bundle", "write_bundle"]

# libyaml when present (10x faster on a bundle's manifest); the same YAML either way
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
TMP_TAG = ".tmp-"  # .<name>.tmp-*: a bundle being written
OLD_TAG = ".old-"  # .<name>.old-*: the previous bundle while the new one is renamed in


class BundleError(UserInputError):
    """A bundle is malformed; the one-line message names the file, the field and the value
    (a UserInputError: the front door prints it as one line, exit status 2)."""


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


def _plain(v: Any) -> Any:
    """numpy scalars and tuples -> YAML-safe Python values (the schema is strict)."""
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def write_bundle(qm: QuantizedModel, out_dir: str | Path, lanes: int = TINY_LIMITS.lanes,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``qm`` as a bundle at ``out_dir``: built in a temporary sibling directory,
    validated by the loader's schema, then renamed into place (:func:`_replace_dir`).

    Whatever fails or is interrupted, ``out_dir`` holds the complete old bundle or the
    complete new one; leftovers of a killed writer are handled by :func:`recover_bundle`,
    which runs first.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_bundle(out)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}{TMP_TAG}"))
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
        manifest = _plain({
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
        })
        try:  # the writer never produces what the loader would refuse
            validate_manifest(manifest)
        except ManifestError as exc:
            raise BundleError(f"{out / MANIFEST}: {exc.line()} (refused before writing)") from None
        (tmp / MANIFEST).write_text(yaml.dump(manifest, Dumper=_DUMPER, sort_keys=False),
                                    encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a bundle is meant to be shared
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _leftovers(out: Path, tag: str) -> list[Path]:
    prefix = f".{out.name}{tag}"
    if not out.parent.is_dir():
        return []
    found = [p for p in out.parent.iterdir() if p.name.startswith(prefix)]
    return sorted(found, key=lambda p: p.lstat().st_mtime_ns)


def recover_bundle(out: str | Path) -> Path | None:
    """Clean up after a writer that was killed (SIGKILL, power loss) mid-write.

    * ``out`` missing and ``.<name>.old-*`` present: the writer died between its two
      renames; the newest old bundle is renamed back to ``out`` (returned).
    * remaining ``.<name>.old-*`` (superseded bundles) and ``.<name>.tmp-*`` (unfinished
      ones) are deleted. One writer per path at a time: a concurrent writer's temporary
      directory would be deleted too.
    """
    out = Path(out)
    restored = None
    olds = _leftovers(out, OLD_TAG)
    if olds and not os.path.lexists(out):
        os.replace(olds[-1], out)
        restored, olds = out, olds[:-1]
    for p in olds + _leftovers(out, TMP_TAG):
        shutil.rmtree(p, ignore_errors=True)
    return restored


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move ``tmp`` to ``out``; an existing bundle is renamed aside, the new one renamed in,
    then the old one deleted. If the second rename fails or is interrupted, the old bundle
    is renamed back before the error propagates. Only a kill between the two renames leaves
    ``out`` missing, with the old bundle at ``.<name>.old-*``: :func:`recover_bundle`
    (run by the next :func:`write_bundle`) renames it back."""
    if not os.path.lexists(out):
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}{OLD_TAG}{secrets.token_hex(4)}"
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if not os.path.lexists(out):
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------
def _manifest_data(root: Path) -> Any:
    mpath = root / MANIFEST
    if not root.is_dir():
        olds = _leftovers(root, OLD_TAG)
        hint = (f" (an interrupted write left the previous bundle at {olds[-1]}: the next "
                "write_bundle renames it back, or rename it yourself)") if olds else ""
        raise BundleError(f"{root}: not a bundle directory{hint}")
    if not mpath.is_file():
        raise BundleError(f"{mpath}: missing file (manifest)")
    raw = mpath.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{mpath}: not UTF-8 text (byte {exc.start}: "
                          f"{raw[exc.start:exc.start + 1]!r})") from None
    try:
        return yaml.load(text, Loader=_LOADER)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        reason = " ".join(str(exc).split())
        raise BundleError(f"{mpath}: not valid YAML: {short_repr(reason, 200)}") from None


def _validated(root: Path) -> tuple[Manifest, Any]:
    data = _manifest_data(root)
    try:
        return validate_manifest(data), data
    except ManifestError as exc:
        raise BundleError(f"{root / MANIFEST}: {exc.line()}") from None


def read_manifest(path: str | Path) -> dict:
    """The manifest as parsed YAML, after the full schema check (raises BundleError)."""
    return _validated(Path(path))[1]


class _Reader:
    """Reads the arrays the (validated) index names: inside the bundle, size, checksum."""

    def __init__(self, root: Path, m: Manifest, verify: bool) -> None:
        self.root, self.m, self.verify = root, m, verify
        self.real_root = root.resolve()
        self.cache: dict[str, np.ndarray] = {}
        self._check_tree()

    def _check_tree(self) -> None:
        named = {MANIFEST} | {e.file for e in self.m.arrays.values()}
        for top, dirs, files in os.walk(self.root):
            for d in dirs:  # os.walk does not enter links to directories: check them here
                if os.path.islink(os.path.join(top, d)):
                    files.append(d)
            for f in files:
                rel = Path(top, f).relative_to(self.root).as_posix()
                if rel not in named:
                    raise BundleError(f"{self.root / rel}: not named by the array index "
                                      f"({self.root / MANIFEST}: arrays)")

    def path_of(self, key: str) -> Path:
        return self.root / self.m.arrays[key].file

    def get(self, key: str, at: Loc) -> np.ndarray:
        if key in self.cache:
            return self.cache[key]
        ent = self.m.arrays[key]
        path = self.path_of(key)
        where = f"{path}: {format_loc(at)}"
        if not os.path.lexists(path):
            raise BundleError(f"{path}: missing file (array {key}, field {format_loc(at)})")
        real = path
        if path.is_symlink():  # no directory on the way is a link (_check_tree)
            real = Path(os.path.realpath(path))
            if not real.is_relative_to(self.real_root):
                raise BundleError(f"{where}: file resolves outside the bundle, to {str(real)!r}")
        if not real.is_file():
            raise BundleError(f"{where}: not a regular file")
        data = real.read_bytes()
        if len(data) != ent.bytes:
            raise BundleError(f"{where}: {len(data)} bytes, {ent.dtype}{list(ent.shape)} needs "
                              f"{ent.bytes} (truncated or padded)")
        if self.verify and _sha256(data) != ent.sha256:
            raise BundleError(f"{where}: sha256 mismatch (file corrupted), got {_sha256(data)[:16]}...")
        a = np.frombuffer(data, dtype=ent.np_dtype).reshape(ent.shape).copy()
        self.cache[key] = a
        return a


def _bad(reader: _Reader, key: str, at: Loc, reason: str, value: Any) -> BundleError:
    return BundleError(f"{reader.path_of(key)}: {format_loc(at)}: {reason}, got {short_repr(value)}")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(-1))[0])


def _check_scales(r: _Reader, key: str, at: Loc, s: np.ndarray) -> None:
    bad = ~(np.isfinite(s) & (s > 0))
    if bad.any():
        k = _first(bad)
        raise _bad(r, key, at + (k,), "must be a positive finite scale", float(s[k]))


def _check_csr(r: _Reader, te: Any, at: Loc, indptr: np.ndarray, indices: np.ndarray,
               in_dim: int) -> None:
    ptr_at, idx_at = at + ("dw_indptr",), at + ("dw_indices",)
    if indptr[0] != 0:
        raise _bad(r, te.dw_indptr, ptr_at + (0,), "must be 0", int(indptr[0]))
    steps = np.diff(indptr.astype(np.int64))
    if np.any(steps < 0):
        row = _first(steps < 0)
        raise _bad(r, te.dw_indptr, ptr_at + (row + 1,), f"below row {row}'s {int(indptr[row])} "
                   "(not monotone)", int(indptr[row + 1]))
    if int(indptr[-1]) != indices.size:
        raise _bad(r, te.dw_indptr, ptr_at + (indptr.size - 1,), f"must be nnz_dw {indices.size}",
                   int(indptr[-1]))
    if indices.size and int(indices.max()) >= in_dim:
        pos = _first(indices.astype(np.int64) >= in_dim)
        raise _bad(r, te.dw_indices, idx_at + (pos,), f"out of range [0, {in_dim})",
                   int(indices[pos]))
    # within each row the columns strictly increase (sorted, no duplicates)
    step = np.diff(indices.astype(np.int64))
    row_start = np.zeros(max(indices.size - 1, 0), dtype=bool)
    starts = indptr[1:-1].astype(np.int64)
    starts = starts[(starts > 0) & (starts < indices.size)]
    row_start[starts - 1] = True
    bad = (step <= 0) & ~row_start
    if bad.any():
        pos = _first(bad) + 1
        what = "duplicate" if step[pos - 1] == 0 else "unsorted"
        raise _bad(r, te.dw_indices, idx_at + (pos,), f"{what} column in its row (columns must "
                   f"strictly increase, previous {int(indices[pos - 1])})", int(indices[pos]))


def load_bundle(path: str | Path, verify_checksums: bool = True) -> QuantizedModel:
    """Read and validate a bundle; raises :class:`BundleError` naming file, field and value
    (the checks: docs/export-format.md, "What the loader checks")."""
    root = Path(path)
    m, _ = _validated(root)
    r = _Reader(root, m, verify_checksums)
    sites: list[SiteParams] = []
    for n, s in enumerate(m.sites):
        at: Loc = ("sites", n)
        s_w = r.get(s.s_w, at + ("s_w",))
        _check_scales(r, s.s_w, at + ("s_w",), s_w)
        sp = SiteParams(layer=s.layer, site=s.site, s_x=s.s_x, s_w=s_w,
                        w=r.get(s.w, at + ("w",)), bias=r.get(s.bias, at + ("bias",)))
        for task, te in s.tasks.items():
            tat = at + ("tasks", task)
            sp.s_y[task] = te.s_y
            mult = r.get(te.req_mult, tat + ("req_mult",))
            shift = r.get(te.req_shift, tat + ("req_shift",))
            if np.any(mult > REQ_MULT_MAX):
                k = _first(mult > REQ_MULT_MAX)
                raise _bad(r, te.req_mult, tat + ("req_mult", k), f"above {REQ_MULT_MAX}", int(mult[k]))
            bad = (shift < REQ_SHIFT_MIN) | (shift > REQ_SHIFT_MAX)
            if bad.any():
                k = _first(bad)
                raise _bad(r, te.req_shift, tat + ("req_shift", k),
                           f"outside [{REQ_SHIFT_MIN}, {REQ_SHIFT_MAX}]", int(shift[k]))
            sp.req_mult[task], sp.req_shift[task] = mult, shift
            if not te.has_delta:
                continue
            d = {f: r.get(getattr(te, f), tat + (f,)) for f in DELTA_ARRAYS}
            _check_csr(r, te, tat, d["dw_indptr"], d["dw_indices"], s.in_dim)
            sp.dw[task] = CsrDelta(d["dw_indptr"], d["dw_indices"], d["dw_values"])
            sp.db[task] = d["db"]
            merged = sp.task_weight(task)
            bad = (merged < WEIGHT_MIN) | (merged > WEIGHT_MAX)
            if bad.any():
                k = _first(bad)
                raise _bad(r, te.dw_values, tat + ("dw_values",), f"W_b + dW leaves int8 "
                           f"[{WEIGHT_MIN}, {WEIGHT_MAX}] at [{k // s.in_dim}, {k % s.in_dim}]",
                           int(merged.reshape(-1)[k]))
        sites.append(sp)
    host: dict[str, dict[str, np.ndarray]] = {}
    mean_std = {"pixel_mean": m.model.pixel_mean, "pixel_std": m.model.pixel_std}
    for task, params in m.host.items():
        host[task] = {}
        for name, key in params.items():
            at = ("host", task, name)
            a = r.get(key, at)
            if not np.all(np.isfinite(a)):
                k = _first(~np.isfinite(a))
                raise _bad(r, key, at + (k,), "must be finite", float(a.reshape(-1)[k]))
            if name in mean_std and not np.array_equal(a.reshape(-1), np.float32(mean_std[name])):
                raise _bad(r, key, at, f"differs from model.{name} {mean_std[name]}",
                           a.reshape(-1).tolist())
            host[task][name] = a
    pol = m.policy
    policy = ReusePolicy(depth=m.model.depth, keyframe_interval=pol.keyframe_interval,
                         key_offset=pol.key_offset, task_reuse=pol.task_reuse,
                         thresholds={t: list(v) for t, v in pol.thresholds.items()},
                         boundaries=dict(pol.boundaries))
    return QuantizedModel(mcfg=m.model.model_dump(), tasks=tuple(m.tasks), sites=sites, host=host,
                          policy=policy)


def core_limits_of(path: str | Path) -> CoreLimits:
    """The manifest's core_limits (what ``deltamtl.contract.codegen --params`` reads)."""
    return _validated(Path(path))[0].limits()


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
