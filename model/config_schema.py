"""The typed schema of a YAML experiment config (pydantic v2, strict).

Every section is a strict model: unknown keys are refused (with the nearest valid key
suggested), no value is coerced (``2.5`` is not an int, ``"3"`` is not a number, ``true``
is not 1; an int is accepted where a float is expected), counts are positive, rates and
probabilities lie in their ranges, task names come from :mod:`deltamtl.model.tasks`, and
cross-field rules (patch size divides the image size, heads divide the width) are checked.

:func:`check_config` validates a plain nested dict and raises :class:`SchemaError` with one
line naming the dotted key, the rule and the offending value; :mod:`deltamtl.model.config`
adds the file name. The config stays a plain dict (the stages read it as such).

The ``sharing`` section's keys are all optional: the stages that read them
(deltamtl.model.sharing.train_steps, .report, deltamtl.model.quant) keep their defaults.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from deltamtl.model.tasks import SUB_TASKS, TASKS
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEPTH_LOSSES = ("l1", "silog", "berhu")
NORMALS_LOSSES = ("cosine", "l1")
SPLITS = ("train", "val", "test")
DATASETS = ("synthetic",)

TaskName = Literal["semseg", "depth", "normals", "edges"]
SubTaskName = Literal["depth", "normals", "edges"]
if TaskName.__args__ != TASKS or SubTaskName.__args__ != SUB_TASKS:  # one definition
    raise ImportError("config_schema: TaskName/SubTaskName differ from deltamtl.model.tasks")

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Real = Annotated[float, Field(allow_inf_nan=False)]
PosReal = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegReal = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class SchemaError(ValueError):
    """One invalid entry: ``key`` is its dotted path, ``message`` the rule and the value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key, self.message = key, message


class _Strict(BaseModel):
    # Defaults are not validated: the optional keys below default to None here because the
    # stages that read them hold the real defaults (train_steps.DEFAULTS, GateConfig, ...);
    # a None the user writes is validated like any other value.
    model_config = ConfigDict(strict=True, extra="forbid", validate_default=False)


class ModelSection(_Strict):
    img_size: PosInt
    patch_size: PosInt
    embed_dim: PosInt
    depth: PosInt
    num_heads: PosInt
    mlp_ratio: PosReal
    qkv_bias: bool
    ln_eps: PosReal
    num_classes: Annotated[int, Field(ge=2)] | None
    head_channels: PosInt
    head_convs: NonNegInt
    pixel_mean: Annotated[list[Real], Field(min_length=3, max_length=3)]
    pixel_std: Annotated[list[PosReal], Field(min_length=3, max_length=3)]
    depth_init_m: Real

    @field_validator("patch_size")
    @classmethod
    def _patch_divides_image(cls, v: int, info) -> int:
        img = info.data.get("img_size")
        if img is not None and img % v:
            raise ValueError(f"must divide model.img_size {img}")
        return v

    @field_validator("num_heads")
    @classmethod
    def _heads_divide_width(cls, v: int, info) -> int:
        width = info.data.get("embed_dim")
        if width is not None and width % v:
            raise ValueError(f"must divide model.embed_dim {width}")
        return v


class DataSection(_Strict):
    dataset: Literal[DATASETS]  # type: ignore[valid-type]
    train_clips: PosInt
    val_clips: PosInt
    test_clips: PosInt
    frames_per_clip: PosInt
    seed: NonNegInt


class TrainSection(_Strict):
    seed: NonNegInt
    steps: PosInt
    batch_size: PosInt
    lr: PosReal
    min_lr_ratio: Fraction
    warmup_steps: NonNegInt
    weight_decay: NonNegReal
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)]
    grad_clip: NonNegReal
    hflip: bool
    loss_weights: dict[TaskName, NonNegReal]
    depth_loss: Literal[DEPTH_LOSSES]  # type: ignore[valid-type]
    normals_loss: Literal[NORMALS_LOSSES]  # type: ignore[valid-type]
    edge_pos_weight: Any  # 'balanced' or a positive number
    eval_every: PosInt
    ckpt_every: PosInt
    log_every: PosInt
    num_workers: NonNegInt
    threads: NonNegInt

    @field_validator("edge_pos_weight")
    @classmethod
    def _balanced_or_positive(cls, v: Any) -> Any:
        if v == "balanced" and isinstance(v, str):
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf"):
            raise ValueError("must be 'balanced' or a number > 0")
        return v


class EvalSection(_Strict):
    batch_size: PosInt
    split: Literal[SPLITS]  # type: ignore[valid-type]


class HardConcrete(_Strict):
    temperature: PosReal = None
    stretch_low: Annotated[float, Field(lt=0, allow_inf_nan=False)] = None
    stretch_high: Annotated[float, Field(gt=1, allow_inf_nan=False)] = None
    log_alpha_init: Real = None
    per_tensor_gate: bool = None


class QuantSettings(_Strict):
    lr_qat: PosReal = None
    calib_batches: PosInt = None
    calib_percentile: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = None
    sub_checkpoint: str = None
    sub_checkpoints: dict[SubTaskName, str] = None


class SharingSection(_Strict):
    base_checkpoint: str = None
    st_checkpoint: str = None
    out_root: str = None
    init_checkpoint: str | None = None
    init_delta: Literal["zero", "st"] = None
    subtasks: list[SubTaskName] = None
    hard_concrete: HardConcrete | None = None
    lambda_w: NonNegReal = None
    lambda_a1: NonNegReal = None
    lambda_a2: NonNegReal = None
    temporal_offsets: Annotated[list[int], Field(min_length=1)] = None
    keyframe_interval: PosInt = None
    keyframe_offsets: list[NonNegInt] = None
    lr_step1: PosReal = None
    lr_step2: PosReal = None
    lr_step3: PosReal = None
    steps_step1: PosInt = None
    steps_step2: PosInt = None
    steps_step3: PosInt = None
    lr_log_alpha: PosReal = None
    delta_weight_decay: NonNegReal = None
    max_delta_nnz: PosInt | None = None
    boundary: Any = None
    report_val_clips: PosInt | None = None
    report_test_clips: PosInt | None = None
    threshold_grid: Annotated[list[NonNegReal], Field(min_length=1)] = None
    threshold_margin: NonNegReal = None
    quant: QuantSettings | None = None

    @field_validator("temporal_offsets")
    @classmethod
    def _no_zero_offset(cls, v: list[int]) -> list[int]:
        if 0 in v:
            raise ValueError("temporal offsets must be non-zero")
        return v

    @field_validator("subtasks")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("sub-tasks must not repeat")
        return v

    @field_validator("keyframe_offsets")
    @classmethod
    def _below_interval(cls, v: list[int], info) -> list[int]:
        k = info.data.get("keyframe_interval")
        if k is not None and any(x >= k for x in v):
            raise ValueError(f"offsets must be below sharing.keyframe_interval {k}")
        return v

    @field_validator("boundary")
    @classmethod
    def _boundary(cls, v: Any) -> Any:
        if v == "auto" and isinstance(v, str):
            return v
        values = v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else None
        keys_ok = not isinstance(v, dict) or set(v) == set(SUB_TASKS)
        if (values is None or len(values) != len(SUB_TASKS) or not keys_ok
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= -1 for x in values)):
            raise ValueError(f"must be 'auto' or one block index >= -1 per sub-task {list(SUB_TASKS)}")
        return v


class ConfigFile(_Strict):
    name: str | None = None
    description: str | None = None
    model: ModelSection
    data: DataSection
    train: TrainSection
    eval: EvalSection
    sharing: SharingSection
    per_task: dict[TaskName, dict[str, Any]] | None = None


SECTIONS = ("model", "data", "train", "sharing", "eval")


# -- where a dotted key leads --------------------------------------------------------------
_NOWHERE = object()


def _unwrap(annotation: Any) -> Any:
    """``X`` of ``X | None`` and of ``Annotated[X, ...]``."""
    while True:
        args = [a for a in (getattr(annotation, "__args__", None) or ()) if a is not type(None)]
        if getattr(annotation, "__metadata__", None) is not None:  # Annotated
            annotation = annotation.__origin__
        elif type(annotation).__name__ in ("UnionType", "_UnionGenericAlias") and len(args) == 1:
            annotation = args[0]
        else:
            return annotation


def _children(annotation: Any) -> tuple[list[str] | None, Any]:
    """(allowed keys or None for any, annotation of a child) of a mapping annotation."""
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields), annotation
    if getattr(annotation, "__origin__", None) is dict:
        key, value = annotation.__args__
        key = _unwrap(key)
        return (list(key.__args__) if getattr(key, "__origin__", None) is Literal else None), value
    return [], None


def annotation_at(parts: list[str] | tuple[str, ...]) -> Any:
    """The schema's annotation of the dotted path ``parts`` (``_NOWHERE``: no such key)."""
    node: Any = ConfigFile
    for part in parts:
        keys, child = _children(node)
        if keys is not None and part not in keys:
            return _NOWHERE
        node = child.model_fields[part].annotation if isinstance(child, type) and \
            issubclass(child, BaseModel) else child
    return node


def known_key(parts: list[str]) -> bool:
    """True when ``parts`` names an entry the schema allows (a field, a task's weight, ...)."""
    return annotation_at(parts) is not _NOWHERE


def is_mapping(parts: list[str]) -> bool:
    """True when the schema entry at ``parts`` is a section or another mapping."""
    at = annotation_at(parts)
    return at is not _NOWHERE and _children(at)[1] is not None


def suggest(parts: list[str], extra: tuple[str, ...] = ()) -> str:
    """' (did you mean 'x.y'?)' for the nearest valid key at that level, or ''."""
    parent = annotation_at(parts[:-1])
    keys = _children(parent)[0] if parent is not _NOWHERE else None
    choices = [str(k) for k in (keys or [])] + [str(c) for c in extra if c not in (keys or [])]
    close = difflib.get_close_matches(str(parts[-1]), choices, n=1, cutoff=0.6)
    return f" (did you mean {'.'.join([*map(str, parts[:-1]), close[0]])!r}?)" if close else ""


# -- checking a dict ---------------------------------------------------------------------
def short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list",
            dict: "mapping", type(None): "null"}.get(type(value), type(value).__name__)


_EXPECTED = {
    "int_type": "expected an integer", "float_type": "expected a number",
    "bool_type": "expected true or false", "string_type": "expected a string",
    "list_type": "expected a list", "dict_type": "expected a mapping", "none_required": "expected null",
    "model_type": "expected a mapping", "model_attributes_type": "expected a mapping",
    "finite_number": "expected a finite number",
}


def _message(err: dict) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "missing key"
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {_type_name(value)} {short(value)}"
    bounds = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}",
              "less_than_equal": "<= {le}"}
    if kind in bounds:
        limits = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in ctx.items()}
        return f"must be {bounds[kind].format(**limits)}, got {short(value)}"
    if kind == "literal_error":
        return f"{short(value)} is not one of {ctx.get('expected', '')}"
    if kind == "too_short":
        return f"too few items (at least {ctx.get('min_length')}), got {short(value)}"
    if kind == "too_long":
        return f"too many items (at most {ctx.get('max_length')}), got {short(value)}"
    if kind == "value_error":
        return f"{str(ctx.get('error', err['msg']))}, got {short(value)}"
    return f"{err['msg'].rstrip('.')}, got {short(value)}"


def _error(err: dict) -> SchemaError:
    loc = list(err["loc"])
    if loc and loc[-1] == "[key]":  # a mapping key (a task name) is what is wrong
        loc = loc[:-1]
        key = ".".join(map(str, loc))
        return SchemaError(key, f"unknown key{suggest([str(p) for p in loc])}")
    key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
    if err["type"] == "extra_forbidden":
        return SchemaError(key, f"unknown key{suggest([str(p) for p in loc])}")
    return SchemaError(key, _message(err))


def check_section(name: str, value: Any) -> None:
    """Raise :class:`SchemaError` for the first invalid entry of one section (``data``, ...)."""
    section = _unwrap(ConfigFile.model_fields[name].annotation)
    try:
        section.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise _error({**err, "loc": (name, *err["loc"])}) from None


def check_config(cfg: Any) -> None:
    """Raise :class:`SchemaError` for the first invalid entry of ``cfg`` (a nested dict)."""
    if not isinstance(cfg, dict):
        raise SchemaError("", f"top level must be a mapping, got {_type_name(cfg)}")
    missing = [s for s in SECTIONS if s not in cfg]
    if missing:
        raise SchemaError(missing[0], "missing section")
    try:
        parsed = ConfigFile.model_validate(cfg)
    except ValidationError as exc:
        raise _error(exc.errors()[0]) from None
    boundary = parsed.sharing.boundary
    if boundary is not None and boundary != "auto":  # None: absent, the report says auto
        values = boundary if isinstance(boundary, list) else list(boundary.values())
        bad = [x for x in values if x >= parsed.model.depth]
        if bad:
            raise SchemaError("sharing.boundary", f"block index {bad[0]} beyond model.depth "
                                                  f"{parsed.model.depth}, got {short(boundary)}")
