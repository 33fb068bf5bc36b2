"""The export manifest's schema (docs/export-format.md): strict pydantic v2 models.

Strict typing (no 2.5 -> 2, "3" -> 3 or true -> 1), unknown keys refused, and the
cross-field rules of a bundle: the model section consistent with itself (patch size dividing
the image, heads dividing the width), the tasks known and unique, the sites in execution
order with the dimensions the model section implies, every host parameter the runner uses
present with the shape it is used with, the reuse policy only for the bundle's tasks, and
every array the manifest names indexed with the dtype, shape and byte count of its field
(and nothing else indexed). The array *contents* (checksums, scales, CSR structure, the
int8 merge) are checked by the loader, :mod:`deltamtl.model.export.bundle`.

:func:`validate_manifest` returns the validated :class:`Manifest` or raises
:class:`ManifestError` with the field path (``policy.thresholds.depth[3]``), the reason and
the offending value; the loader prefixes the file and raises its ``BundleError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

import numpy as np
from deltamtl.contract.formats import (
    CONTRACT_VERSION,
    CSR_INDEX_DTYPE,
    CSR_INDPTR_DTYPE,
    CSR_VALUE_DTYPE,
    TH_MAX,
    TH_MIN,
)
from deltamtl.contract.limits import LIMIT_FIELDS, CoreLimits
from deltamtl.model.tasks import (
    BASE_TASK,
    EMBED,
    TASK_OUT_CHANNELS_FIXED,
    TASKS,
    site_name,
    site_order,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1
FORMAT = "deltamtl-bundle"
MANIFEST = "manifest.yaml"
ARRAY_DIR = "arrays"

# field -> little-endian dtype of its array (the index's ``dtype`` is its ``.str``)
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
SITE_ARRAYS = ("w", "bias", "s_w")
TASK_ARRAYS = ("req_mult", "req_shift")
DELTA_ARRAYS = ("dw_indptr", "dw_indices", "dw_values", "db")
MAX_ARRAY_DIM = 1 << 24  # no dimension of a bundle array comes near this

Loc = tuple[str | int, ...]


class ManifestError(ValueError):
    """One rule broken: ``loc`` is the field path, ``value`` the offending value."""

    def __init__(self, loc: Loc, reason: str, value: Any = None, has_value: bool = True) -> None:
        self.loc, self.reason, self.value, self.has_value = tuple(loc), reason, value, has_value
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{format_loc(self.loc)}: {self.reason}"
        return f"{text}, got {short_repr(self.value)}" if self.has_value else text


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def format_loc(loc: Loc) -> str:
    """('policy', 'thresholds', 'depth', 3) -> 'policy.thresholds.depth[3]';
    ('host', 'depth', 'encoder.pos_embed') -> "host.depth['encoder.pos_embed']"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        elif not _PLAIN.fullmatch(part):  # array keys and state-dict names hold '.' and '/'
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _rule(at: Loc, reason: str, value: Any) -> PydanticCustomError:
    """A cross-field rule broken inside a model validator, ``at`` relative to that model."""
    return PydanticCustomError("bundle_rule", "{reason}", {"reason": reason, "at": tuple(at),
                                                            "value": value})


# ---------------------------------------------------------------------------------------
# Field types
# ---------------------------------------------------------------------------------------
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
PosInt = Annotated[int, Field(ge=1, le=MAX_ARRAY_DIM)]
NonNegInt = Annotated[int, Field(ge=0, le=MAX_ARRAY_DIM)]
Scale = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # positive and finite
Finite = Annotated[float, Field(allow_inf_nan=False)]
ArrayKey = Annotated[str, Field(min_length=1, max_length=400)]
Threshold = Annotated[int, Field(ge=TH_MIN, le=TH_MAX)]
DTYPE_STRS = tuple(sorted({d.str for d in DTYPES.values()}))


class _Strict(BaseModel):
    model_config = _STRICT


class ModelSection(_Strict):
    """The config's ``model`` section as :func:`deltamtl.model.quant.quantizer.model_config`
    writes it (everything the runner needs)."""

    img_size: PosInt
    patch_size: PosInt
    embed_dim: PosInt
    depth: PosInt
    num_heads: PosInt
    mlp_ratio: Scale
    qkv_bias: bool
    ln_eps: Scale
    num_classes: PosInt
    head_channels: PosInt
    head_convs: NonNegInt
    pixel_mean: Annotated[list[Finite], Field(min_length=3, max_length=3)]
    pixel_std: Annotated[list[Scale], Field(min_length=3, max_length=3)]

    @model_validator(mode="after")
    def _consistent(self) -> ModelSection:
        if self.img_size % self.patch_size:
            raise _rule(("patch_size",), f"must divide img_size {self.img_size}", self.patch_size)
        if self.embed_dim % self.num_heads:
            raise _rule(("num_heads",), f"must divide embed_dim {self.embed_dim}", self.num_heads)
        if self.hidden < 1:
            raise _rule(("mlp_ratio",), f"gives an MLP width of {self.hidden}", self.mlp_ratio)
        return self

    @property
    def tokens(self) -> int:
        return (self.img_size // self.patch_size) ** 2

    @property
    def hidden(self) -> int:
        return int(round(self.embed_dim * self.mlp_ratio))

    def site_dims(self, site: str) -> tuple[int, int]:
        """(in_dim, out_dim) of a site."""
        d, p, h = self.embed_dim, self.patch_size, self.hidden
        return {EMBED: (3 * p * p, d), "attn.qkv": (d, 3 * d), "attn.proj": (d, d),
                "mlp.fc1": (d, h), "mlp.fc2": (h, d)}[site]

    def host_shapes(self, task: str) -> dict[str, tuple[int, ...]]:
        """Every host parameter of ``task`` the runner uses (host/float_ops.py), with its
        PyTorch shape (state-dict names)."""
        d, p, hc = self.embed_dim, self.patch_size, self.head_channels
        out: dict[str, tuple[int, ...]] = {"pixel_mean": (1, 3, 1, 1), "pixel_std": (1, 3, 1, 1),
                                            "encoder.pos_embed": (1, self.tokens, d),
                                            "encoder.norm.weight": (d,), "encoder.norm.bias": (d,)}
        for layer in range(self.depth):
            for norm in ("norm1", "norm2"):
                for f in ("weight", "bias"):
                    out[f"encoder.blocks.{layer}.{norm}.{f}"] = (d,)
        head = f"heads.{task}."
        out[head + "proj.weight"], out[head + "proj.bias"] = (p * p * hc, d), (p * p * hc,)
        in_ch = hc + 3  # the head concatenates the normalised image
        for i in range(max(self.head_convs - 1, 0)):
            out[f"{head}refine.{2 * i}.weight"], out[f"{head}refine.{2 * i}.bias"] = (hc, in_ch, 3, 3), (hc,)
            in_ch = hc
        k = 3 if self.head_convs > 0 else 1
        oc = self.num_classes if task == BASE_TASK else TASK_OUT_CHANNELS_FIXED[task]
        out[head + "out.weight"], out[head + "out.bias"] = (oc, in_ch, k, k), (oc,)
        return out


class ArrayEntry(_Strict):
    file: Annotated[str, Field(min_length=1, max_length=600)]
    dtype: Literal[DTYPE_STRS]  # type: ignore[valid-type]
    shape: Annotated[list[NonNegInt], Field(max_length=4)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: NonNegInt

    @field_validator("file")
    @classmethod
    def _inside(cls, v: str) -> str:
        p = PurePosixPath(v)
        if (v.startswith("/") or "\\" in v or "\0" in v or p.parts[:1] != (ARRAY_DIR,)
                or any(part in ("..", ".", "") for part in v.split("/")) or p.suffix != ".bin"):
            raise PydanticCustomError("bundle_rule", "{reason}", {
                "reason": f"must be a relative path {ARRAY_DIR}/....bin inside the bundle", "at": (),
                "value": v})
        return v

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)


class SiteTask(_Strict):
    s_y: Scale
    req_mult: ArrayKey
    req_shift: ArrayKey
    nnz_dw: NonNegInt | None = None
    density_dw: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    dw_indptr: ArrayKey | None = None
    dw_indices: ArrayKey | None = None
    dw_values: ArrayKey | None = None
    db: ArrayKey | None = None

    @property
    def has_delta(self) -> bool:
        return self.nnz_dw is not None

    @model_validator(mode="after")
    def _all_or_none(self) -> SiteTask:
        fields = ("nnz_dw", "density_dw") + DELTA_ARRAYS
        present = [f for f in fields if getattr(self, f) is not None]
        if present and len(present) != len(fields):
            missing = next(f for f in fields if getattr(self, f) is None)
            raise _rule((missing,), f"missing field (the delta fields {', '.join(fields)} come "
                        "together)", None)
        return self


class Site(_Strict):
    name: str
    layer: Annotated[int, Field(ge=-1)]
    site: str
    in_dim: PosInt
    out_dim: PosInt
    s_x: Scale
    w: ArrayKey
    bias: ArrayKey
    s_w: ArrayKey
    tasks: dict[str, SiteTask]

    @model_validator(mode="after")
    def _named(self) -> Site:
        if self.name != site_name(self.layer, self.site):
            raise _rule(("name",), f"must be {site_name(self.layer, self.site)!r} "
                        f"(layer {self.layer}, site {self.site!r})", self.name)
        return self


class Policy(_Strict):
    keyframe_interval: PosInt
    key_offset: NonNegInt
    task_reuse: bool
    thresholds: dict[str, list[Threshold]]
    boundaries: dict[str, Annotated[int, Field(ge=-1, le=MAX_ARRAY_DIM)]]

    @model_validator(mode="after")
    def _offset(self) -> Policy:
        if self.key_offset >= self.keyframe_interval:
            raise _rule(("key_offset",), f"must be in [0, keyframe_interval {self.keyframe_interval})",
                        self.key_offset)
        return self


# core_limits: one int field per contract/limits.py LIMIT_FIELDS (the list is defined there)
CoreLimitsSection = create_model(  # type: ignore[call-overload]
    "CoreLimitsSection", __config__=_STRICT, **{f: (PosInt, ...) for f in LIMIT_FIELDS})


class Manifest(_Strict):
    format: Literal[FORMAT]  # type: ignore[valid-type]
    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    contract_version: Literal[CONTRACT_VERSION]  # type: ignore[valid-type]
    model: ModelSection
    tasks: Annotated[list[str], Field(min_length=1)]
    base_task: str
    core_limits: CoreLimitsSection  # type: ignore[valid-type]
    policy: Policy
    sites: list[Site]
    host: dict[str, dict[str, ArrayKey]]
    arrays: dict[str, ArrayEntry]
    extra: dict[str, Any]

    @model_validator(mode="after")
    def _cross(self) -> Manifest:
        self._check_tasks()
        self._check_sites()
        self._check_host()
        self._check_policy()
        self._check_index()
        self._check_limits()
        return self

    # -- rules across sections ---------------------------------------------------------
    def _check_tasks(self) -> None:
        for n, t in enumerate(self.tasks):
            if t not in TASKS:
                raise _rule(("tasks", n), f"unknown task (known: {', '.join(TASKS)})", t)
            if t in self.tasks[:n]:
                raise _rule(("tasks", n), "task listed twice", t)
        if self.tasks[0] != BASE_TASK:
            raise _rule(("tasks", 0), f"the base task {BASE_TASK!r} must come first", self.tasks[0])
        if self.base_task != BASE_TASK:
            raise _rule(("base_task",), f"must be {BASE_TASK!r}", self.base_task)

    def _check_sites(self) -> None:
        order = site_order(self.model.depth)
        if len(self.sites) != len(order):
            raise _rule(("sites",), f"a depth-{self.model.depth} model has {len(order)} sites",
                        f"{len(self.sites)} entries")
        for n, (s, (layer, site)) in enumerate(zip(self.sites, order, strict=True)):
            if (s.layer, s.site) != (layer, site):
                raise _rule(("sites", n), f"expected layer {layer} site {site!r} (execution order)",
                            (s.layer, s.site))
            for f, want in zip(("in_dim", "out_dim"), self.model.site_dims(site), strict=True):
                if getattr(s, f) != want:
                    raise _rule(("sites", n, f), f"the model section gives {want}", getattr(s, f))
            want_tasks = self.tasks if layer >= 0 else self.tasks[:1]
            if list(s.tasks) != list(want_tasks):
                raise _rule(("sites", n, "tasks"), f"must list {list(want_tasks)} in this order",
                            list(s.tasks))
            for t, te in s.tasks.items():
                at = ("sites", n, "tasks", t)
                sub = layer >= 0 and t != BASE_TASK
                if te.has_delta != sub:
                    what = "needs the delta fields" if sub else "has no delta fields"
                    raise _rule(at + ("nnz_dw",), f"{'a sub-task' if sub else 'the base'} {what}",
                                te.nnz_dw)
                if sub and te.nnz_dw is not None and te.density_dw is not None:
                    density = te.nnz_dw / float(s.in_dim * s.out_dim)
                    if not math.isclose(te.density_dw, density, rel_tol=1e-9, abs_tol=1e-12):
                        raise _rule(at + ("density_dw",), f"nnz_dw / (O*I) is {density!r}",
                                    te.density_dw)

    def _check_host(self) -> None:
        if list(self.host) != list(self.tasks):
            raise _rule(("host",), f"must list the tasks {list(self.tasks)} in this order",
                        list(self.host))
        for t, params in self.host.items():
            want = self.model.host_shapes(t)
            missing = [k for k in want if k not in params]
            if missing:
                raise _rule(("host", t, missing[0]), "missing host parameter (the runner uses it)",
                            None)
            unknown = [k for k in params if k not in want]
            if unknown:
                raise _rule(("host", t, unknown[0]), "not a host parameter of this model",
                            params[unknown[0]])

    def _check_policy(self) -> None:
        depth = self.model.depth
        for t, ths in self.policy.thresholds.items():
            if t not in self.tasks:
                raise _rule(("policy", "thresholds", t), f"not a task of this bundle {list(self.tasks)}",
                            ths)
            if len(ths) != depth:
                raise _rule(("policy", "thresholds", t), f"needs {depth} values (one per block)",
                            ths)
        for t, b in self.policy.boundaries.items():
            if t not in self.tasks[1:]:
                raise _rule(("policy", "boundaries", t),
                            f"not a sub-task of this bundle {list(self.tasks[1:])}", b)
            if b >= depth:
                raise _rule(("policy", "boundaries", t), f"must be in [-1, {depth})", b)

    def references(self) -> Iterator[tuple[Loc, str, np.dtype, tuple[int, ...]]]:
        """(field path, array key, dtype, shape) of every array the manifest names."""
        for n, s in enumerate(self.sites):
            o, i = s.out_dim, s.in_dim
            shapes = {"w": (o, i), "bias": (o,), "s_w": (o,)}
            for f in SITE_ARRAYS:
                yield ("sites", n, f), getattr(s, f), DTYPES[f], shapes[f]
            for t, te in s.tasks.items():
                at = ("sites", n, "tasks", t)
                for f in TASK_ARRAYS:
                    yield at + (f,), getattr(te, f), DTYPES[f], (o,)
                if te.nnz_dw is not None:
                    nnz = te.nnz_dw
                    shapes = {"dw_indptr": (o + 1,), "dw_indices": (nnz,), "dw_values": (nnz,),
                              "db": (o,)}
                    for f in DELTA_ARRAYS:
                        yield at + (f,), getattr(te, f), DTYPES[f], shapes[f]
        for t, params in self.host.items():
            shapes = self.model.host_shapes(t)
            for name, key in params.items():
                yield ("host", t, name), key, DTYPES["host"], shapes[name]

    def _check_index(self) -> None:
        used: set[str] = set()
        for at, key, dtype, shape in self.references():
            ent = self.arrays.get(key)
            if ent is None:
                raise _rule(at, "array key not in the array index", key)
            where = ("arrays", key)
            if ent.np_dtype != dtype:
                raise _rule(where + ("dtype",), f"{format_loc(at)} must be {dtype.str!r}", ent.dtype)
            if tuple(ent.shape) != shape:
                raise _rule(where + ("shape",), f"{format_loc(at)} must be {list(shape)}", ent.shape)
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if ent.bytes != nbytes:
                raise _rule(where + ("bytes",), f"{dtype.str}{list(shape)} is {nbytes} bytes",
                            ent.bytes)
            used.add(key)
        for key in self.arrays:
            if key not in used:
                raise _rule(("arrays", key), "listed but referenced by no field", self.arrays[key].file)
        files: dict[str, str] = {}
        for key, ent in self.arrays.items():
            if ent.file in files:
                raise _rule(("arrays", key, "file"), f"also the file of {format_loc(('arrays', files[ent.file]))}",
                            ent.file)
            files[ent.file] = key

    def _check_limits(self) -> None:
        values = {f: getattr(self.core_limits, f) for f in LIMIT_FIELDS}
        try:
            declared = CoreLimits(**values)
        except ValueError as exc:
            raise _rule(("core_limits",), str(exc), values) from None
        m = self.model
        need = {"max_tokens": m.tokens,
                "max_in": max(s.in_dim for s in self.sites),
                "max_out": max(s.out_dim for s in self.sites),
                "max_nnz_dw": max([te.nnz_dw or 0 for s in self.sites for te in s.tasks.values()] + [1]),
                "max_weights": max(s.in_dim * s.out_dim for s in self.sites)}
        for f, v in need.items():
            if getattr(declared, f) < v:
                raise _rule(("core_limits", f), f"below the model's {v}", getattr(declared, f))

    def limits(self) -> CoreLimits:
        return CoreLimits(**{f: getattr(self.core_limits, f) for f in LIMIT_FIELDS})


_MESSAGES = {"missing": "missing field", "extra_forbidden": "unknown field (not in the schema)"}


def validate_manifest(data: Any) -> Manifest:
    """The validated manifest, or :class:`ManifestError` for the first rule it breaks."""
    if not isinstance(data, Mapping):
        raise ManifestError((), "must be a mapping", type(data).__name__)
    # the identity first, with its own message: a future schema may differ in everything else
    for f, want in (("format", FORMAT), ("schema_version", SCHEMA_VERSION),
                    ("contract_version", CONTRACT_VERSION)):
        got = data.get(f)
        if type(got) is not type(want) or got != want:
            raise ManifestError((f,), f"this loader reads {want!r}", got)
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        ctx = err.get("ctx") or {}
        if err["type"] == "bundle_rule":
            raise ManifestError(tuple(err["loc"]) + tuple(ctx.get("at", ())), str(ctx["reason"]),
                                ctx.get("value")) from None
        reason = _MESSAGES.get(err["type"], err["msg"])
        raise ManifestError(tuple(err["loc"]), reason, err.get("input"),
                            has_value=err["type"] != "missing") from None
