"""The footage the bench runs and what one run of it costs, job by job.

Three kinds of footage, each at the model's input size:

* ``synthetic``: clips of the synthetic test split (model/data/synthetic.py), the video the
  models were trained on;
* ``photo pan``: scikit-image's photos filmed by a virtual handheld camera
  (:mod:`deltamtl.model.data.pans`);
* ``gif``: scikit-image's animated GIF, every frame.

:func:`measure` runs a clip through the whole-video runner (``GoldenRunner``, the golden
core by default) and keeps every job's header fields and measured non-zeros, from which
the sections compute MACs, densities, DDR bytes and cycle-model cycles per frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from deltamtl.contract.cycle_model import cycle_breakdown, union_per_tile
from deltamtl.contract.formats import JobFlag, Mode, keep_delta
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.limits import BOARD_LIMITS
from deltamtl.contract.macs import dense_macs
from deltamtl.host.runner import GoldenRunner, SiteExecutor
from deltamtl.model.export.quantized_model import QuantizedModel

KINDS = ("synthetic", "photo pan", "gif")


@dataclass(frozen=True)
class Clip:
    name: str
    kind: str  # one of KINDS
    frames: np.ndarray  # uint8 [T, H, W, 3]


def footage(qm: QuantizedModel, n_frames: int, synthetic_clips: int, photos: Iterable[str],
            seed: int, gif: bool = True) -> list[Clip]:
    """The bench's clips at the model's input size (deterministic in ``seed``)."""
    from deltamtl.model.data import pans
    from deltamtl.model.data.datasets import synthetic_clips as render

    size = int(qm.mcfg["img_size"])
    out = [Clip(f"synthetic test clip {i}", "synthetic", c.rgb[:n_frames])
           for i, c in enumerate(render("test", synthetic_clips, n_frames, size, size, seed=seed))]
    out += [Clip(f"{name} pan", "photo pan", frames)
            for name, frames in pans.photo_pans(size, n_frames, seed, tuple(photos)).items()]
    if gif:
        out.append(Clip(pans.GIF_NAME, "gif", pans.gif_frames(size)))
    return out


@dataclass(frozen=True)
class Job:
    """One executed site job: header fields and measured non-zeros."""

    frame: int
    keyframe: bool
    task: str
    layer: int
    mode: Mode
    flags: JobFlag
    tokens: int
    in_dim: int
    out_dim: int
    nnz_act: int
    numel_act: int  # elements of X (0 for DENSE: no delta encoding)
    nnz_dw: int
    macs: int  # executed MACs (runner's accounting)
    bytes: int  # DDR bytes read + written
    union: int = 0  # sum over token tiles of |inputs with a non-zero in the tile| (scaled engine)
    union_slots: int = 0  # tiles x in_dim: what ``union`` is a fraction of

    @property
    def dense_macs(self) -> int:
        return dense_macs(self.tokens, self.in_dim, self.out_dim)

    def header(self) -> dict:
        return {"mode": self.mode, "flags": self.flags, "tokens": self.tokens,
                "in_dim": self.in_dim, "out_dim": self.out_dim, "nnz_dw": self.nnz_dw,
                "nnz_act": self.tokens * self.in_dim if self.mode == Mode.DENSE else self.nnz_act}


class _UnionProbe:
    """A golden core that also measures, before each job, the per-tile input unions the
    scaled engine walks (token tiles of ``token_rows``; docs/rtl.md, "Scaled engine")."""

    def __init__(self, qm: QuantizedModel, token_rows: int) -> None:
        self.core = GoldenCore(qm.core_limits())
        self.token_rows = token_rows
        self.unions: list[tuple[int, int]] = []

    def reset(self) -> None:
        self.core.reset()

    def run_job(self, job):  # SiteJob -> JobResult
        d = job_deltas(job, self.core.state)
        self.unions.append(tile_unions(d != 0, self.token_rows))
        return self.core.run_job(job)


def job_deltas(job, state) -> np.ndarray:
    """The delta matrix the core encodes for a SiteJob: X itself for DENSE, else the kept
    delta against the job's (LOAD_REF) or the resident references."""
    if Mode(int(job.mode)) == Mode.DENSE:
        return np.asarray(job.x, dtype=np.int16)
    x_ref = job.x_ref if JobFlag(int(job.flags)) & JobFlag.LOAD_REF else state.x_ref
    return keep_delta(job.x, x_ref, job.th)


def tile_unions(mask: np.ndarray, token_rows: int) -> tuple[int, int]:
    """(sum over tiles of the inputs non-zero in any token of the tile, tiles x inputs)."""
    union = union_per_tile(mask, token_rows)  # the cycle model's own count
    return int(union.sum()), union.size * mask.shape[1]


def measure(qm: QuantizedModel, frames: np.ndarray, executor: SiteExecutor | None = None,
            token_rows: int = BOARD_LIMITS.token_rows) -> list[Job]:
    """Every job of one run of ``frames`` from a fresh runner (frame 0 a keyframe); with the
    default executor each job also carries its tile unions at ``token_rows``."""
    probe = _UnionProbe(qm, token_rows) if executor is None else None
    runner = GoldenRunner(qm, probe if probe is not None else executor)
    keyframes = []
    for f in frames:
        runner.run_frame(f)
        keyframes.append(runner.last_keyframe)
    unions = probe.unions if probe is not None else [(0, 0)] * len(runner.records)
    jobs = []
    for r, (union, slots) in zip(runner.records, unions, strict=True):
        sp = qm.site(r.layer, r.site)
        jobs.append(Job(frame=r.frame, keyframe=keyframes[r.frame], task=r.task, layer=r.layer,
                        mode=r.mode, flags=r.flags, tokens=qm.tokens, in_dim=sp.in_dim,
                        out_dim=sp.out_dim, nnz_act=r.nnz_act, numel_act=r.numel_act,
                        nnz_dw=r.nnz_dw, macs=r.macs, bytes=r.bytes_read + r.bytes_written,
                        union=union, union_slots=slots))
    return jobs


def job_cycles(job: Job, lanes: int) -> int:
    """Cycle-model cycles of a job from its header and non-zero count (spread evenly over
    the tokens: every token holds at least one non-zero, which errs towards more cycles)."""
    return cycle_breakdown(job.header(), lanes).total


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def summarise(jobs: list[Job], lanes: int) -> dict:
    """Per-frame site MACs, DDR bytes and cycles (keyframes and the rest), densities per
    (task, mode)."""
    frames = sorted({j.frame for j in jobs})
    per_frame = []
    for f in frames:
        fj = [j for j in jobs if j.frame == f]
        per_frame.append({"frame": f, "keyframe": fj[0].keyframe,
                          "site_macs": sum(j.macs for j in fj),
                          "dense_site_macs": sum(j.dense_macs for j in fj),
                          "ddr_bytes": sum(j.bytes for j in fj),
                          "cycles": sum(job_cycles(j, lanes) for j in fj),
                          "jobs": len(fj)})
    key = [p for p in per_frame if p["keyframe"]]
    rest = [p for p in per_frame if not p["keyframe"]]

    def mean(rows: list[dict], k: str) -> float | None:
        return float(np.mean([r[k] for r in rows])) if rows else None

    dens: dict[str, dict[str, float | None]] = {}
    for task in sorted({j.task for j in jobs}):
        row = {}
        for mode in (Mode.TASK, Mode.TEMPORAL):
            sel = [j for j in jobs if j.task == task and j.mode == mode and j.layer >= 0]
            row[mode.name] = _ratio(sum(j.nnz_act for j in sel), sum(j.numel_act for j in sel))
        dens[task] = row
    return {
        "frames": len(per_frame), "keyframes": len(key),
        "site_macs_keyframe": mean(key, "site_macs"), "site_macs_other": mean(rest, "site_macs"),
        "site_macs_mean": mean(per_frame, "site_macs"),
        "dense_site_macs": mean(per_frame, "dense_site_macs"),
        "ddr_bytes_keyframe": mean(key, "ddr_bytes"), "ddr_bytes_other": mean(rest, "ddr_bytes"),
        "cycles_keyframe": mean(key, "cycles"), "cycles_other": mean(rest, "cycles"),
        "cycles_mean": mean(per_frame, "cycles"),
        "act_density": dens, "per_frame": per_frame,
    }


def pooled_densities(jobs: list[Job]) -> dict[str, dict[str, float | None]]:
    """Activation density per (task, mode) over block sites, pooled over every job given
    (non-zeros over elements, so large sites weigh more, as they do in the MAC count)."""
    out: dict[str, dict[str, float | None]] = {}
    for task in sorted({j.task for j in jobs}):
        out[task] = {}
        for mode in (Mode.TASK, Mode.TEMPORAL):
            sel = [j for j in jobs if j.task == task and j.mode == mode and j.layer >= 0]
            out[task][mode.name] = _ratio(sum(j.nnz_act for j in sel), sum(j.numel_act for j in sel))
    return out


def pooled_union_densities(jobs: list[Job]) -> dict[str, dict[str, float | None]]:
    """Per (task, mode), block sites: the tile unions over tiles x inputs, pooled. The
    scaled engine walks a tile's union once per output group, so this, not the element
    density, sets its activation-pass cycles; DENSE jobs are counted too."""
    out: dict[str, dict[str, float | None]] = {}
    for task in sorted({j.task for j in jobs}):
        out[task] = {}
        for mode in (Mode.DENSE, Mode.TASK, Mode.TEMPORAL):
            sel = [j for j in jobs if j.task == task and j.mode == mode and j.layer >= 0]
            out[task][mode.name] = _ratio(sum(j.union for j in sel), sum(j.union_slots for j in sel))
    return out


def dw_density(qm: QuantizedModel) -> dict[str, float]:
    """Per sub-task: non-zero dW entries over the block sites' weights (S_w)."""
    weights = sum(sp.in_dim * sp.out_dim for sp in qm.sites if sp.layer >= 0)
    return {t: sum(int(sp.dw[t].nnz) for sp in qm.sites if t in sp.dw) / weights
            for t in qm.subtasks}
