"""Per-frame streaming statistics: MACs executed vs dense (per task and site), activation
delta densities, DDR bytes, register accesses, time per stage and the keyframe reason;
written as JSON lines, a markdown summary and three plots (docs/streaming.md).

"Dense" MACs of a job are ``tokens * in * out`` (``contract.macs.dense_macs``): what the
same site costs with no reuse at all, i.e. a single-task model of that task; summed over
the four tasks it is the cost of four single-task models.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from deltamtl.contract.atomic import atomic_path, atomic_write_text
from deltamtl.contract.formats import Mode
from deltamtl.contract.macs import dense_macs
from deltamtl.host.runner import JobRecord
from deltamtl.model.export.quantized_model import QuantizedModel

STAGES = ("io", "host_ops", "accelerator", "output")
SCHEMA_KEYS = ("frame", "source_index", "t", "gap", "keyframe", "reason", "macs", "dense_macs",
               "site_macs", "density", "ddr_bytes_read", "ddr_bytes_written", "register_accesses",
               "times_s", "retries", "embed_density")


@dataclass
class FrameStats:
    frame: int  # stream frame counter
    source_index: int  # the source's frame number
    t: float  # source time stamp, seconds
    gap: int  # frames dropped before this one
    keyframe: bool
    reason: str | None
    macs: dict[str, int]  # per task, executed
    dense_macs: dict[str, int]  # per task, with no reuse
    site_macs: dict[str, list[int]]  # "task/site name" -> [executed, dense]
    density: dict[str, float]  # "task/site name" -> delta density (sent / elements), non-DENSE jobs
    ddr_bytes_read: int
    ddr_bytes_written: int
    register_accesses: int | None  # None when the backend does not count them
    times_s: dict[str, float] = field(default_factory=dict)  # per stage in STAGES
    retries: int = 0  # fault recoveries on this frame
    embed_density: float | None = None  # adaptive: the scheduler's measure before the frame

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=False, sort_keys=True)


def frame_stats(qm: QuantizedModel, records: Sequence[JobRecord], **fields: object) -> FrameStats:
    """Aggregate one frame's job records (``fields``: the FrameStats fields records lack)."""
    macs: dict[str, int] = {}
    dense: dict[str, int] = {}
    site: dict[str, list[int]] = {}
    sent: dict[str, list[int]] = {}
    rd = wr = 0
    # QuantizedModel.site() rebuilds its index on every call; one lookup table per frame
    sites = {(sp.layer, sp.site): sp for sp in qm.sites}
    for r in records:
        sp = sites[(r.layer, r.site)]
        d = dense_macs(qm.tokens, sp.in_dim, sp.out_dim)
        macs[r.task] = macs.get(r.task, 0) + r.macs
        dense[r.task] = dense.get(r.task, 0) + d
        key = f"{r.task}/{sp.name}"
        s = site.setdefault(key, [0, 0])
        s[0] += r.macs
        s[1] += d
        if Mode(r.mode) != Mode.DENSE and r.numel_act:
            n = sent.setdefault(key, [0, 0])
            n[0] += r.nnz_act
            n[1] += r.numel_act
        rd += r.bytes_read
        wr += r.bytes_written
    density = {k: v[0] / v[1] for k, v in sent.items()}
    return FrameStats(macs=macs, dense_macs=dense, site_macs=site, density=density,
                      ddr_bytes_read=rd, ddr_bytes_written=wr, **fields)  # type: ignore[arg-type]


def check_schema(row: dict) -> None:
    """Raise ValueError naming the key when a JSON-lines row lacks a field or has a wrong type."""
    missing = [k for k in SCHEMA_KEYS if k not in row]
    if missing:
        raise ValueError(f"stats row of frame {row.get('frame')}: missing {missing}")
    for k in ("macs", "dense_macs", "site_macs", "density", "times_s"):
        if not isinstance(row[k], dict):
            raise ValueError(f"stats row of frame {row['frame']}: {k} is {type(row[k]).__name__}, expected an object")
    if row["keyframe"] and row["reason"] is None:
        raise ValueError(f"stats row of frame {row['frame']}: keyframe without a reason")


class StreamStats:
    """All frames' statistics; writers for JSON lines, markdown and plots."""

    def __init__(self) -> None:
        self.frames: list[FrameStats] = []

    def add(self, fs: FrameStats) -> None:
        self.frames.append(fs)

    def totals(self) -> dict:
        fr = self.frames
        tasks = sorted({t for f in fr for t in f.macs})
        macs = {t: sum(f.macs.get(t, 0) for f in fr) for t in tasks}
        dense = {t: sum(f.dense_macs.get(t, 0) for f in fr) for t in tasks}
        reasons: dict[str, int] = {}
        for f in fr:
            if f.keyframe:
                reasons[f.reason or "?"] = reasons.get(f.reason or "?", 0) + 1
        times = {s: sum(f.times_s.get(s, 0.0) for f in fr) for s in STAGES}
        regs = [f.register_accesses for f in fr]
        total_macs, total_dense = sum(macs.values()), sum(dense.values())
        return {
            "frames": len(fr), "keyframes": sum(f.keyframe for f in fr), "keyframe_reasons": reasons,
            "dropped_frames": sum(f.gap for f in fr), "retries": sum(f.retries for f in fr),
            "macs": macs, "dense_macs": dense, "total_macs": total_macs, "total_dense_macs": total_dense,
            "macs_saved_vs_dense": 1.0 - total_macs / total_dense if total_dense else 0.0,
            "ddr_bytes_read": sum(f.ddr_bytes_read for f in fr),
            "ddr_bytes_written": sum(f.ddr_bytes_written for f in fr),
            "register_accesses": None if any(r is None for r in regs) else sum(regs),  # type: ignore[misc]
            "times_s": times, "frames_per_s": len(fr) / sum(times.values()) if sum(times.values()) else 0.0,
        }

    def write_jsonl(self, path: Path) -> None:
        atomic_write_text(path, "".join(f.to_json() + "\n" for f in self.frames))

    def markdown(self) -> str:
        t = self.totals()
        lines = ["| task | MACs executed | MACs dense | saved |", "|---|---|---|---|"]
        for task, m in t["macs"].items():
            d = t["dense_macs"][task]
            lines.append(f"| {task} | {m:,} | {d:,} | {1 - m / d:.1%} |")
        lines.append(f"| all | {t['total_macs']:,} | {t['total_dense_macs']:,} | {t['macs_saved_vs_dense']:.1%} |")
        lines += ["", f"frames {t['frames']}, keyframes {t['keyframes']} "
                      f"({', '.join(f'{k}: {v}' for k, v in sorted(t['keyframe_reasons'].items()))}), "
                      f"dropped frames {t['dropped_frames']}, fault recoveries {t['retries']}",
                  f"DDR bytes read {t['ddr_bytes_read']:,}, written {t['ddr_bytes_written']:,}; "
                  f"register accesses {t['register_accesses'] if t['register_accesses'] is not None else 'not reported by this backend'}",
                  "", "| stage | seconds | share |", "|---|---|---|"]
        total = sum(t["times_s"].values()) or 1.0
        for s, v in t["times_s"].items():
            lines.append(f"| {s} | {v:.3f} | {v / total:.1%} |")
        lines += ["", f"{t['frames_per_s']:.1f} frames/s end to end"]
        return "\n".join(lines) + "\n"

    def plot(self, out: Path, base: str = "semseg") -> list[str]:
        """macs.png (MACs per frame, keyframes marked), density.png (per base site),
        times.png (time split). Returns the file names."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fr = self.frames
        x = np.arange(len(fr))
        names = []
        fig, ax = plt.subplots(figsize=(7, 3))
        tasks = sorted({t for f in fr for t in f.macs})
        bottom = np.zeros(len(fr))
        for task in tasks:
            v = np.array([f.macs.get(task, 0) for f in fr], dtype=np.float64) / 1e6
            ax.bar(x, v, bottom=bottom, width=1.0, label=task)
            bottom += v
        dense = np.array([sum(f.dense_macs.values()) for f in fr]) / 1e6
        ax.plot(x, dense, "k--", lw=1, label="dense (4 single-task models)")
        keys = [i for i, f in enumerate(fr) if f.keyframe]
        ax.plot(keys, bottom[keys], "rv", ms=5, label="keyframe")
        ax.set_xlabel("frame")
        ax.set_ylabel("MMACs")
        ax.legend(fontsize=7, ncol=3)
        names.append(self._save(fig, out / "macs.png"))
        fig, ax = plt.subplots(figsize=(7, 3))
        sites: list[str] = []  # the base's sites in execution order
        for f in fr:
            sites += [k for k in f.density if k.startswith(f"{base}/") and k not in sites]
        for k in sites:
            ax.plot(x, [f.density.get(k, np.nan) for f in fr], lw=1, label=k.split("/", 1)[1])
        ax.set_xlabel("frame")
        ax.set_ylabel("base delta density")
        ax.set_ylim(0, 1)
        if sites:
            ax.legend(fontsize=6, ncol=4)
        names.append(self._save(fig, out / "density.png"))
        fig, ax = plt.subplots(figsize=(7, 3))
        bottom = np.zeros(len(fr))
        for s in STAGES:
            v = np.array([f.times_s.get(s, 0.0) for f in fr]) * 1e3
            ax.bar(x, v, bottom=bottom, width=1.0, label=s)
            bottom += v
        ax.set_xlabel("frame")
        ax.set_ylabel("ms")
        ax.legend(fontsize=7, ncol=4)
        names.append(self._save(fig, out / "times.png"))
        return names

    @staticmethod
    def _save(fig, path: Path) -> str:
        import matplotlib.pyplot as plt

        fig.tight_layout()
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        return path.name
