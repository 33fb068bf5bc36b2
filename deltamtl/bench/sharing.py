"""Section 2, compute sharing: the paper-style table of the finished sharing run (when it
exists), and analytic MACs and parameters of the board and paper-scale configs at the
densities measured on the bench's model, beside the paper's NYUD-v2 figures.

The analytic table (``analytic``) follows docs/sharing.md, "Accounting", per image:

* ST: four dense models (every site P*I*O, attention core 2*P^2*D per block, the head);
* +weight sharing: the same MACs without the sub-tasks' patch embedding (shared with the
  base); parameters: the base model + per sub-task S_w x (block site weights) + its own
  LayerNorms and head;
* +task act sharing: sub-task sites TASK on every frame: S_a1 x P x I x O + P x S_w x I x O;
* +task+temporal act sharing: the mean over K frames of a keyframe (as above) and K-1
  frames between (base TEMPORAL at S_a2, each sub-task TEMPORAL above its boundary or TASK
  below); attention cores and heads stay dense.

Densities carry over as fractions (S_w per sub-task, S_a1 and S_a2 per task, the base's
patch-embedding S_a2), the same in every block of the larger model. The paper's "FLOPs"
count one multiply-add as one operation (its ViT-B base at 416x416 is 75 G, as our MAC
count of that shape is), so they sit beside MACs here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from deltamtl.bench.context import REPO
from deltamtl.contract.formats import Mode
from deltamtl.contract.macs import dense_macs, job_macs
from deltamtl.model.tasks import BASE_TASK, SUB_TASKS

# Published (the paper, NYUD-v2, tables 3(b) and 4): GFLOPs and parameters (M)
PUBLISHED_NYUD = {
    "ST": {"gflops": 314.14, "params_m": 366.64},
    "+weight sharing": {"gflops": 314.14, "params_m": 122.46},
    "+task act sharing": {"gflops": 186.88, "params_m": 122.46},
    "+task+temporal act sharing": {"gflops": 107.87, "params_m": 122.46},
}
ROWS = tuple(PUBLISHED_NYUD)


def sharing_report() -> dict:
    """The finished sharing run's table, or how to make it."""
    path = REPO / "runs" / "sharing" / "report.json"
    if not path.is_file():
        return {"present": False, "path": str(path.relative_to(REPO)),
                "how": "make sharing-train sharing-sweep sharing-report (docs/sharing.md; "
                       "hours on two cores with the committed schedule)"}
    import json

    from deltamtl.model.sharing.report import markdown

    rep = json.loads(path.read_text())
    try:
        table = markdown(rep)
    except (KeyError, TypeError, ValueError) as exc:  # written by an older report version
        table = f"(present but not in the current report format: {type(exc).__name__}: {exc})"
    return {"present": True, "path": str(path.relative_to(REPO)), "markdown": table,
            "acceptance": rep.get("acceptance"), "config": rep.get("config_name")}


def analytic(config: Path, act: Mapping[str, Mapping[str, float]], embed_s_a2: float,
             dw: Mapping[str, float], boundaries: Mapping[str, int], k: int) -> dict:
    """MACs and parameters per image of ``config`` at the densities given (module docstring)."""
    from deltamtl.bench.configs import head_macs, meta_model
    from deltamtl.model.sharing.accounting import attention_core_macs, linear_sites, tokens_of

    model = meta_model(str(config))
    p = tokens_of(model)
    sites = linear_sites(model)
    embed_name = next(n for n in sites if n.endswith("patch_embed"))
    pe = sites[embed_name]
    embed_macs = dense_macs(p, pe.in_features, pe.out_features)
    blocks = []  # per block: [(in, out)] of its sites
    for block in model.encoder.blocks:
        blocks.append([(m.in_features, m.out_features) for m in
                       (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2)])
    block_weights = sum(i * o for blk in blocks for i, o in blk)
    block_dense = sum(dense_macs(p, i, o) for blk in blocks for i, o in blk)
    attn = attention_core_macs(model)
    heads = {t: head_macs(str(config), t) for t in (BASE_TASK, *SUB_TASKS)}
    extras = {t: attn + heads[t] for t in heads}
    total_params = sum(int(x.numel()) for x in model.parameters())
    head_params = {t: sum(int(x.numel()) for x in model.heads[t].parameters()) for t in heads}
    site_params = sum(int(x.numel()) for m in sites.values() for x in m.parameters())
    pos = int(model.encoder.pos_embed.numel())
    shared_host = total_params - site_params - sum(head_params.values())  # pos_embed + norms
    norms = shared_host - pos
    base_params = total_params - sum(head_params[t] for t in SUB_TASKS)
    st_params = {t: base_params - head_params[BASE_TASK] + head_params[t] for t in heads}

    def sub_params(t: str) -> float:
        return dw[t] * block_weights + norms + head_params[t]

    dense_task = {t: block_dense + extras[t] + (embed_macs if t == BASE_TASK else 0) for t in heads}
    st_macs = {t: block_dense + embed_macs + extras[t] for t in heads}

    def job(mode: Mode, t: str, i: int, o: int) -> float:
        """Expected MACs of one job at the densities (the contract's rule)."""
        nnz_dw = dw[t] * i * o if t != BASE_TASK else 0.0
        return job_macs(mode, p, i, o, nnz_dw, act[t][mode.name] * p * i)

    def task_frame(t: str) -> float:
        return sum(job(Mode.TASK, t, i, o) for blk in blocks for i, o in blk)

    def other_frame(t: str) -> float:
        if t == BASE_TASK:
            return (job_macs(Mode.TEMPORAL, p, pe.in_features, pe.out_features, 0,
                             embed_s_a2 * p * pe.in_features)
                    + sum(job(Mode.TEMPORAL, t, i, o) for blk in blocks for i, o in blk))
        b = boundaries.get(t, len(blocks) - 1)
        return sum(job(Mode.TEMPORAL if layer > b else Mode.TASK, t, i, o)
                   for layer, blk in enumerate(blocks) for i, o in blk)

    task_act = {t: (dense_task[t] if t == BASE_TASK else task_frame(t) + extras[t]) for t in heads}
    key = task_act
    other = {t: other_frame(t) + extras[t] for t in heads}
    temporal = {t: (key[t] + (k - 1) * other[t]) / k for t in heads}
    shared_params = base_params + sum(sub_params(t) for t in SUB_TASKS)
    rows = {
        "ST": {"macs": st_macs, "params": float(sum(st_params.values()))},
        "+weight sharing": {"macs": dense_task, "params": shared_params},
        "+task act sharing": {"macs": task_act, "params": shared_params},
        "+task+temporal act sharing": {"macs": temporal, "params": shared_params},
    }
    for r in rows.values():
        r["gmacs"] = sum(r["macs"].values()) / 1e9
        r["params_m"] = r["params"] / 1e6
    return {"config": str(config.relative_to(REPO)) if config.is_relative_to(REPO) else str(config),
            "tokens": p, "rows": rows,
            "dense_extras_share_of_st": sum(extras.values()) / sum(st_macs.values())}
