"""Section 4, board projection: frames/s of a config on the ZCU104 from the cycle model at
measured densities, bounded by DDR bandwidth, plus the host's costs, and a roofline.

How a frame is projected (``project``):

* the config's model gives the shapes (tokens P; per block qkv, proj, fc1, fc2; the patch
  embedding, the base's alone);
* every site issues the runner's job plan (``GoldenRunner._plan``, docs/architecture.md):
  on a keyframe the base's DENSE job, then each sub-task's TASK job on the resident base
  state; between keyframes the base's TEMPORAL job, then each sub-task's TASK job (block
  at or below its boundary) or its own TEMPORAL job (above);
* a job's activation non-zeros are ``density x P x I`` with the density measured on the
  bench model for that (task, mode), pooled over its block sites; its dW non-zeros are the
  measured dW density of that sub-task x I x O. These fractions are carried to the larger
  config unchanged, the same in every block: a statement that the larger model's inputs
  change as sparsely as the small one's, which only a trained board model can check;
* the scaled engine walks each tile's input union, so its jobs also carry the measured
  tile-union density per (task, mode) (inputs non-zero in any of the tile's T tokens, over
  tiles x inputs, at the board's T), carried over the same way;
* cycles: the cycle model (contract/cycle_model.py, held to the RTL simulation) for three
  builds side by side: the pre-issue-18 engine (one non-zero per cycle to L lanes), the
  scaled T x L array on 64-bit streams, and the scaled array at the board's stream width
  (``engine_builds``; a build the cores do not implement yet is labelled so); DDR bytes: the contract's region sizes of the regions each job uses
  (contract/descriptor.py). Time per frame = max(cycles / clock, bytes / DDR bandwidth):
  the core streams its inputs as it computes, so the slower of the two bounds the frame.

Host-side costs per frame are counted, not timed: the attention core and heads (MACs, from
model/sharing/accounting.py) and the element-wise float work; register accesses per frame
come from the virtual ZCU104 when the driver branch is present, else from the per-job
register sequence of contract/registers.py, times a per-access cost taken from a published
PYNQ measurement (an assumption for the ZCU104, labelled as such).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from deltamtl.contract.cycle_model import compute_breakdown
from deltamtl.contract.descriptor import region_bytes, regions_used
from deltamtl.contract.formats import JobFlag, Mode
from deltamtl.contract.limits import BOARD_BEAT_WORDS, BOARD_LIMITS, BOARD_WIDE_LIMITS, CoreLimits
from deltamtl.contract.macs import dense_macs, job_macs
from deltamtl.contract.platform import PART_RESOURCES
from deltamtl.contract.registers import KERNEL_ARGS
from deltamtl.model.tasks import BASE_TASK, SUB_TASKS

CLOCK_HZ = 300e6  # the design's PL clock (docs/board.md)
DDR_BYTES_PER_S = 12.8e9  # reachable PS DDR4 bandwidth from the PL (FIELD-NOTES: ~75 % of 17 GB/s)
# ZCU104 (XCZU7EV): its DSP48E2s (contract/platform.py), two int8 MACs each per cycle
DSP48E2 = PART_RESOURCES["DSP48E2"]
INT8_PEAK_MACS = DSP48E2 * 2 * CLOCK_HZ

# Published anchors (../shared/FIELD-NOTES.md, "Cost facts for the board"); labelled
# as published wherever they appear.
PUBLISHED_REG_ACCESS_S = 30e-6  # PYNQ MMIO write from Python on a PYNQ-Z1
PUBLISHED_ZCU102 = (  # name, model, latency ms, GOPS (None: not published)
    ("Edge-MoE", "M3ViT-T", 34.6, 72.0),
    ("UbiMoE", "ViT-T", 8.2, 97.0),
    ("CoQMoE", "ViT, int8, 1754 DSPs", 6.5, 386.0),
    ("HeatViT", "DeiT-S, token pruning", 9.2, None),
)


@dataclass(frozen=True)
class Shapes:
    tokens: int
    embed: tuple[int, int]  # patch embedding (in, out)
    blocks: list[list[tuple[int, int]]]  # per block: (in, out) of qkv, proj, fc1, fc2
    host: dict[str, float]  # host MACs and element counts per task and frame


def config_shapes(config: Path, tasks: tuple[str, ...] = (BASE_TASK, *SUB_TASKS)) -> Shapes:
    """Site shapes and host-side costs of a config's model (on the meta device: counted,
    never run)."""
    from deltamtl.bench.configs import head_macs, meta_model
    from deltamtl.model.config import load_config
    from deltamtl.model.sharing.accounting import attention_core_macs, tokens_of
    from deltamtl.model.tasks import BLOCK_SITES

    cfg = load_config(config)
    model = meta_model(str(config), (), tasks)
    p = tokens_of(model)
    pe = model.encoder.patch_embed
    embed = (int(pe.in_features), int(pe.out_features)) if hasattr(pe, "in_features") else (0, 0)
    blocks = []
    for block in model.encoder.blocks:
        mods = [block.get_submodule(s) for s in BLOCK_SITES]
        blocks.append([(int(m_.in_features), int(m_.out_features)) for m_ in mods])
    m = cfg["model"]
    d, depth, heads = int(m["embed_dim"]), int(m["depth"]), int(m["num_heads"])
    hidden = int(d * float(m["mlp_ratio"]))
    host = {
        "attention_core_macs": float(attention_core_macs(model)),
        "head_macs": float(sum(head_macs(str(config), t) for t in tasks) / len(tasks)),
        # element-wise float work per task and frame (counted in elements, not weighted):
        # LayerNorm (2 per block + final), GELU, softmax, residual adds (2 per block),
        # (de)quantisation of every site input and output
        "layernorm_elems": float((2 * depth + 1) * p * d),
        "gelu_elems": float(depth * p * hidden),
        "softmax_elems": float(depth * heads * p * p),
        "residual_elems": float(2 * depth * p * d),
        "quant_elems": float(sum(p * (i + o) for blk in blocks for i, o in blk)),
    }
    return Shapes(tokens=p, embed=embed, blocks=blocks, host=host)


@dataclass(frozen=True)
class EngineBuild:
    """One engine the projection compares: the cycle model's engine and the core's maxima."""

    name: str
    label: str
    engine: str  # contract/cycle_model.py ENGINES: "v1" (pre-issue-18) or "scaled"
    limits: CoreLimits

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.limits.lanes * (1 if self.engine == "v1" else self.limits.token_rows)


def engine_builds() -> list[EngineBuild]:
    """Today's engine before issue 18, the scaled array on 64-bit streams, and the scaled
    array at the board's stream width (BOARD_BEAT_WORDS words a beat)."""
    wide = BOARD_WIDE_LIMITS
    built = BOARD_LIMITS.beat_words == BOARD_BEAT_WORDS
    return [
        EngineBuild("v1", f"pre-issue-18 engine: one non-zero per cycle to {BOARD_LIMITS.lanes} lanes, "
                          "64-bit stream", "v1", replace(BOARD_LIMITS, token_rows=1, beat_words=1)),
        EngineBuild("scaled_b1", f"scaled engine: {BOARD_LIMITS.token_rows} x {BOARD_LIMITS.lanes} "
                                 "array, 64-bit stream", "scaled", replace(BOARD_LIMITS, beat_words=1)),
        EngineBuild("scaled", f"scaled engine: {wide.token_rows} x {wide.lanes} array, "
                              f"{64 * wide.beat_words}-bit stream"
                              + ("" if built else " (both cores run it in simulation and it fits the "
                                        "ZCU104 per yosys, docs/rtl.md; not the board build yet: "
                                        "fetch/commit are 64-bit, docs/hls.md)"),
                    "scaled", wide),
    ]


def _job(mode: Mode, flags: JobFlag, p: int, i: int, o: int, act_density: float,
         union_density: float, dw_nnz: int, build: EngineBuild) -> dict[str, float]:
    nnz_act = p * i if mode == Mode.DENSE else int(round(act_density * p * i))
    nnz_act = max(nnz_act, 0)
    base, extra = divmod(nnz_act, p)
    per_token = np.full(p, base)
    per_token[:extra] += 1
    lim = build.limits
    tiles = -(-p // lim.token_rows)
    union = np.full(tiles, min(i, int(round(union_density * i))))
    br = compute_breakdown(mode, flags, p, i, o, dw_nnz, lim.lanes, per_token, lim.token_rows,
                           union, build.engine, lim.beat_words)
    phases = {f"cycles_{k}": v for k, v in asdict(br).items()}  # where the cycles go
    nbytes = sum(region_bytes(r, p, i, o, dw_nnz) for r in regions_used(mode, flags, dw_nnz))
    macs = job_macs(mode, p, i, o, dw_nnz, nnz_act)
    return {"cycles": br.total, "bytes": nbytes, "macs": macs, "dense_macs": dense_macs(p, i, o),
            "jobs": 1, **phases}


def _add(acc: dict[str, float], row: dict[str, float]) -> None:
    for k, v in row.items():
        acc[k] = acc.get(k, 0) + v


@dataclass(frozen=True)
class Densities:
    """Measured densities a projection is made at (module docstring): per (task, mode) the
    element density ``act`` and the tile-union density ``union`` (DENSE included), the patch
    embedding's TEMPORAL pair, the sub-tasks' dW densities and their boundaries."""

    act: Mapping[str, Mapping[str, float]]
    union: Mapping[str, Mapping[str, float]]
    embed: float
    embed_union: float
    dw: Mapping[str, float]
    boundaries: Mapping[str, int]

    def a(self, task: str, mode: str) -> float:
        return float(self.act.get(task, {}).get(mode) or 0.0)

    def u(self, task: str, mode: str) -> float:
        if mode == "DENSE":  # a frame of real pixels: every input non-zero unless measured
            return float(self.union.get(task, {}).get(mode) or 1.0)
        return float(self.union.get(task, {}).get(mode) or 0.0)


def frame_cost(shapes: Shapes, keyframe: bool, dens: Densities, build: EngineBuild,
               subtasks: tuple[str, ...] = SUB_TASKS) -> dict[str, float]:
    """Cycles, DDR bytes, MACs and jobs of one frame under the runner's job plan."""
    p = shapes.tokens
    tot: dict[str, float] = {}
    base_flags = JobFlag.LOAD_W | JobFlag.EMIT_REF
    dense_u = dens.u(BASE_TASK, "DENSE")
    if shapes.embed != (0, 0):
        i, o = shapes.embed
        if keyframe:
            _add(tot, _job(Mode.DENSE, base_flags, p, i, o, 1.0, dense_u, 0, build))
        else:
            _add(tot, _job(Mode.TEMPORAL, base_flags | JobFlag.LOAD_REF, p, i, o, dens.embed,
                           dens.embed_union, 0, build))
    for layer, sites in enumerate(shapes.blocks):
        for i, o in sites:
            if keyframe:
                _add(tot, _job(Mode.DENSE, base_flags, p, i, o, 1.0, dense_u, 0, build))
            else:
                _add(tot, _job(Mode.TEMPORAL, base_flags | JobFlag.LOAD_REF, p, i, o,
                               dens.a(BASE_TASK, "TEMPORAL"), dens.u(BASE_TASK, "TEMPORAL"), 0, build))
            for t in subtasks:
                nnz_dw = int(round(dens.dw[t] * i * o))
                above = layer > dens.boundaries.get(t, len(shapes.blocks) - 1)
                if keyframe or not above:
                    flags = JobFlag.EMIT_REF if (keyframe and above) else JobFlag.NONE
                    _add(tot, _job(Mode.TASK, flags, p, i, o, dens.a(t, "TASK"), dens.u(t, "TASK"),
                                   nnz_dw, build))
                else:
                    _add(tot, _job(Mode.TEMPORAL, JobFlag.LOAD_REF | JobFlag.EMIT_REF, p, i, o,
                                   dens.a(t, "TEMPORAL"), dens.u(t, "TEMPORAL"), nnz_dw, build))
    return tot


def register_sequence_per_job() -> dict[str, int]:
    """Register accesses of one job launched on its own through fetch and commit, from the
    register map (contract/registers.py): every argument written (64-bit: two words), one
    ap_start write, at least one ap_done read, the status word and its valid word read."""
    writes = sum(r.bits // 32 for r in KERNEL_ARGS if r.direction == "in") + 1
    reads = 1 + sum(r.bits // 32 for r in KERNEL_ARGS if r.direction == "out") + 1
    return {"writes_per_kernel": writes, "reads_per_kernel": reads, "kernels": 2,
            "per_job": 2 * (writes + reads)}


def project(config: Path, dens: Densities, keyframe_interval: int,
            builds: list[EngineBuild] | None = None, registers_per_frame: float | None = None,
            registers_source: str = "") -> dict:
    """Frames/s of ``config`` with 4 tasks at the densities given, per engine build
    (module docstring)."""
    shapes = config_shapes(config)
    builds = builds if builds is not None else engine_builds()
    k = int(keyframe_interval)

    def timing(row: Mapping[str, float], build: EngineBuild) -> dict[str, float]:
        t_cycles = row["cycles"] / CLOCK_HZ
        t_ddr = row["bytes"] / DDR_BYTES_PER_S
        t = max(t_cycles, t_ddr)
        return {"ms_cycles": 1e3 * t_cycles, "ms_ddr": 1e3 * t_ddr, "ms": 1e3 * t,
                "bound": "cycles" if t_cycles >= t_ddr else "DDR",
                "frames_per_s": 1.0 / t, "macs_per_s": row["macs"] / t,
                "fraction_of_int8_peak": row["macs"] / t / INT8_PEAK_MACS,
                "mac_utilisation": row["macs"] / (row["cycles"] * build.peak_macs_per_cycle)}

    engines = {}
    for build in builds:
        key = frame_cost(shapes, True, dens, build)
        other = frame_cost(shapes, False, dens, build)
        mean = {n: (key[n] + (k - 1) * other[n]) / k for n in key}
        engines[build.name] = {
            "label": build.label, "engine": build.engine, "limits": asdict(build.limits),
            "peak_macs_per_cycle": build.peak_macs_per_cycle,
            "keyframe": {**key, **timing(key, build)}, "other": {**other, **timing(other, build)},
            "mean": {**mean, **timing(mean, build)}}
    jobs = next(iter(engines.values()))["mean"]["jobs"]
    regs = register_sequence_per_job()
    if registers_per_frame is None:
        registers_per_frame = regs["per_job"] * jobs
        registers_source = ("one register sequence per job (contract/registers.py: "
                            f"{regs['per_job']} accesses x {jobs:.0f} jobs)")
    p_tasks = 1 + len(SUB_TASKS)
    host_macs = p_tasks * (shapes.host["attention_core_macs"] + shapes.host["head_macs"])
    elems = {k_: p_tasks * v for k_, v in shapes.host.items() if k_.endswith("_elems")}
    return {
        "config": _rel(config), "tokens": shapes.tokens, "clock_hz": CLOCK_HZ,
        "ddr_bytes_per_s": DDR_BYTES_PER_S, "keyframe_interval": k,
        "int8_peak_macs_per_s": INT8_PEAK_MACS,
        "densities": {"act": {t: dict(v) for t, v in dens.act.items()},
                      "union": {t: dict(v) for t, v in dens.union.items()},
                      "union_token_rows": BOARD_LIMITS.token_rows,
                      "embed_temporal": dens.embed, "embed_temporal_union": dens.embed_union,
                      "dw": dict(dens.dw), "boundaries": dict(dens.boundaries)},
        "engines": engines, "headline_engine": builds[-1].name,
        "host": {"float_macs_per_frame": host_macs, "float_flops_per_frame": 2 * host_macs,
                 "elementwise_per_frame": elems,
                 "register_accesses_per_frame": registers_per_frame,
                 "register_accesses_source": registers_source,
                 "register_sequence": regs,
                 "assumed_s_per_register_access": PUBLISHED_REG_ACCESS_S,
                 "register_ms_per_frame": 1e3 * registers_per_frame * PUBLISHED_REG_ACCESS_S},
    }


def _rel(path: Path) -> str:
    """A path as the reader types it: relative to the repository when inside it."""
    from deltamtl.bench.context import REPO

    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def density_sweep(config: Path, dw: Mapping[str, float], boundaries: Mapping[str, int],
                  builds: list[EngineBuild] | None = None) -> list[dict]:
    """Frame time against one activation density for every (task, mode), per engine build:
    where each engine's time goes as inputs get sparser. The tile unions are assumed from
    the density as if inputs changed independently, 1 - (1 - d)^T (the measured projections
    above use measured unions)."""
    shapes = config_shapes(config)
    rows = []
    for build in builds if builds is not None else engine_builds():
        for d in (1.0, 0.5, 0.25, 0.1, 0.03):
            u = 1.0 - (1.0 - d) ** build.limits.token_rows
            modes = ("DENSE", "TASK", "TEMPORAL")
            dens = Densities(act={t: {m: d for m in modes} for t in (BASE_TASK, *SUB_TASKS)},
                             union={t: {m: u for m in modes} for t in (BASE_TASK, *SUB_TASKS)},
                             embed=d, embed_union=u, dw=dw, boundaries=boundaries)
            other = frame_cost(shapes, False, dens, build)
            key = frame_cost(shapes, True, dens, build)
            rows.append({"engine": build.name, "act_density": d, "assumed_union_density": u,
                         "keyframe_cycles": key["cycles"], "frame_cycles": other["cycles"],
                         "keyframe_bytes": key["bytes"], "frame_bytes": other["bytes"],
                         "frame_ms": 1e3 * max(other["cycles"] / CLOCK_HZ, other["bytes"] / DDR_BYTES_PER_S)})
    return rows


def heatvit_dense_equivalent_gops(config: Path) -> dict:
    """HeatViT publishes a latency, not a throughput: its DeiT-S (ViT-Tiny's shape at width
    384, 6 heads) dense MACs over that latency, a dense-equivalent figure (HeatViT prunes
    tokens, so it executes fewer). MACs from our own accounting of that shape."""
    from deltamtl.bench.configs import meta_model
    from deltamtl.model.sharing.accounting import dense_model_macs

    model = meta_model(str(config), ("model.embed_dim=384", "model.num_heads=6"), (BASE_TASK,))
    m = dense_model_macs(model, BASE_TASK)
    encoder = m.patch_embed + m.blocks_linear + m.attention_core
    latency = next(r[2] for r in PUBLISHED_ZCU102 if r[0] == "HeatViT")
    return {"deit_s_encoder_macs": encoder, "published_latency_ms": latency,
            "dense_equivalent_gops": 2 * encoder / (latency * 1e-3) / 1e9}


def plot_roofline(proj: Mapping, heatvit: Mapping, path: Path, caption: str, save) -> None:
    """Roofline (GOPS against ops per DDR byte): ZCU104 int8 DSP peak and DDR roof, each
    engine's compute roof, every engine's projected frames (executed ops) and the headline
    engine's dense-equivalent mean frame; the published ZCU102 designs as throughput lines
    (their intensity is not published)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5))
    x = np.logspace(-1, 3, 200)
    peak = 2 * INT8_PEAK_MACS / 1e9
    ddr = DDR_BYTES_PER_S / 1e9
    ax.loglog(x, np.minimum(peak, ddr * x), "k-", label=f"ZCU104 roof: int8 DSP peak {peak:.0f} GOPS, DDR {ddr} GB/s")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ("--", "-.", ":")
    for n, (name, e) in enumerate(proj["engines"].items()):
        c = colors[n % len(colors)]
        roof = 2 * e["peak_macs_per_cycle"] * CLOCK_HZ / 1e9
        ax.loglog(x, np.minimum(roof, ddr * x), ls=styles[n % len(styles)], color=c, lw=1,
                  label=f"{e['label']}: compute roof {roof:.0f} GOPS")
        for frame, marker in (("keyframe", "s"), ("other", "o"), ("mean", "D")):
            row = e[frame]
            ax.loglog([2 * row["macs"] / row["bytes"]], [2 * row["macs_per_s"] / 1e9], marker, color=c,
                      ms=7, label=f"  {name}, {frame} frame: {2 * row['macs_per_s'] / 1e9:.1f} GOPS, "
                                   f"{row['frames_per_s']:.1f} frames/s")
    row = proj["engines"][proj["headline_engine"]]["mean"]
    dense_ops = 2 * row["dense_macs"]  # what four dense models would execute per frame
    dense_gops = dense_ops / (row["ms"] * 1e-3) / 1e9
    ax.loglog([dense_ops / row["bytes"]], [dense_gops], "*", ms=12, color="k",
              label=f"{proj['headline_engine']}, mean frame, dense-equivalent ops: {dense_gops:.0f} GOPS")
    for k, (name, model, ms, gops) in enumerate(PUBLISHED_ZCU102):
        label = f"published (ZCU102): {name}, {model}, {ms} ms"
        if gops is None:
            gops = heatvit["dense_equivalent_gops"]
            label += ", dense-equivalent"
        ax.axhline(gops, color=colors[(k + 4) % len(colors)], ls=":", lw=1.5, label=f"{label}: {gops:.0f} GOPS")
    ax.set_xlabel("operational intensity (ops per DDR byte, 2 ops per MAC)")
    ax.set_ylabel("GOPS")
    ax.set_title(f"Roofline: {Path(proj['config']).name}, 4 tasks, K={proj['keyframe_interval']}")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no point hidden
    ax.grid(True, which="both", alpha=0.3)
    save(fig, path, caption)
    plt.close(fig)
