"""Section 1, real footage beside synthetic: densities and MACs of the headline model on
the synthetic test clips, on scikit-image's photos under a handheld pan, and on its GIF.

Each clip runs from a fresh runner (frame 0 a keyframe, then the bundle's keyframe
interval) on the golden core. Per clip: site MACs of keyframes and of the frames between
(what the linear sites execute, the runner's accounting by contract/macs.py: DENSE
nnz(x)*O, TEMPORAL nnz(d)*O, TASK nnz(d)*O + P*nnz(dW)), the dense site MACs of the same frames, the activation
densities per (task, mode) (kept delta non-zeros over elements, block sites), DDR bytes and
today's engine's cycles from the cycle model. Per kind of footage the figures are pooled
over its clips. The headline is the real footage (``HEADLINE_KIND``): synthetic frames
repeat far more pixels than a hand-held camera does, so they flatter temporal reuse.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from deltamtl.bench import workload
from deltamtl.bench.context import BenchContext
from deltamtl.contract.limits import BOARD_LIMITS
from deltamtl.model.export.quantized_model import QuantizedModel

HEADLINE_KIND = "photo pan"


def run(ctx: BenchContext, qm: QuantizedModel, clips: list[workload.Clip], lanes: int) -> dict:
    per_clip = []
    jobs_by_kind: dict[str, list[workload.Job]] = {}
    for clip in clips:
        ctx.log(f"[bench] footage: {clip.name} ({len(clip.frames)} frames)")
        jobs = workload.measure(qm, clip.frames)
        s = workload.summarise(jobs, lanes)
        embed = [j for j in jobs if j.layer < 0 and j.mode.name == "TEMPORAL"]
        s["embed_temporal_density"] = (sum(j.nnz_act for j in embed) / sum(j.numel_act for j in embed)
                                       if embed else None)
        s.update(name=clip.name, kind=clip.kind)
        per_clip.append(s)
        jobs_by_kind.setdefault(clip.kind, []).extend(jobs)
    kinds = {}
    for kind, jobs in jobs_by_kind.items():
        rows = [c for c in per_clip if c["kind"] == kind]
        embed = [j for j in jobs if j.layer < 0 and j.mode.name == "TEMPORAL"]

        def mean(key: str, rows: list[dict] = rows) -> float | None:
            vals = [r[key] for r in rows if r[key] is not None]
            return float(np.mean(vals)) if vals else None

        kinds[kind] = {
            "clips": len(rows), "frames": sum(r["frames"] for r in rows),
            "site_macs_keyframe": mean("site_macs_keyframe"),
            "site_macs_other": mean("site_macs_other"),
            "site_macs_mean": mean("site_macs_mean"),
            "dense_site_macs": mean("dense_site_macs"),
            "cycles_other": mean("cycles_other"), "cycles_keyframe": mean("cycles_keyframe"),
            "act_density": workload.pooled_densities(jobs),
            "union_density": workload.pooled_union_densities(jobs),
            "embed_temporal_density": (sum(j.nnz_act for j in embed) / sum(j.numel_act for j in embed)
                                       if embed else None),
            "embed_temporal_union_density": (sum(j.union for j in embed) / sum(j.union_slots for j in embed)
                                             if embed else None),
        }
    return {"headline_kind": HEADLINE_KIND, "lanes": lanes,
            "token_rows": BOARD_LIMITS.token_rows,
            "dw_density": workload.dw_density(qm), "clips": per_clip, "kinds": kinds,
            "keyframe_interval": int(qm.policy.keyframe_interval),
            "thresholds": qm.policy.thresholds, "boundaries": qm.policy.boundaries}


def plot(ctx: BenchContext, res: Mapping, config: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = res["clips"]
    colors = {"synthetic": "tab:blue", "photo pan": "tab:orange", "gif": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = [c["name"].replace(" test clip ", " ") for c in clips]
    x = np.arange(len(clips))
    other = [1e-6 * (c["site_macs_other"] or 0) for c in clips]
    key = [1e-6 * (c["site_macs_keyframe"] or 0) for c in clips]
    ax = axes[0]
    ax.bar(x - 0.2, key, 0.4, color="0.7")
    ax.bar(x + 0.2, other, 0.4, color=[colors.get(c["kind"], "k") for c in clips])
    from matplotlib.patches import Patch

    handles = [Patch(color="0.7", label="keyframe")] + [
        Patch(color=colors[k], label=f"between keyframes, {k}") for k in colors
        if any(c["kind"] == k for c in clips)]
    ax.set_xticks(x, names, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("site MMACs per frame (4 tasks)")
    ax.set_title("Linear-site MACs per frame")
    ax.legend(handles=handles, fontsize=7)
    ax = axes[1]
    tasks = list(next(iter(res["kinds"].values()))["act_density"])
    width = 0.8 / max(len(res["kinds"]), 1)
    for k, (kind, row) in enumerate(res["kinds"].items()):
        vals = [row["act_density"][t]["TEMPORAL"] or 0.0 for t in tasks]
        ax.bar(np.arange(len(tasks)) + (k - (len(res["kinds"]) - 1) / 2) * width, vals, width,
               color=colors.get(kind, "k"), label=kind)
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.set_ylabel("TEMPORAL activation density (kept deltas / elements)")
    ax.set_title("Temporal density by footage")
    ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.save_figure("footage", fig, "fig_footage.png",
                    "Site MACs per frame per clip (grey: keyframes; colour: frames between, by "
                    "kind of footage) and TEMPORAL densities per task and footage", config)
    plt.close(fig)
