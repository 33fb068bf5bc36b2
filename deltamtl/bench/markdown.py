"""bench.json -> bench.md: one section per bench section, figures with their provenance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deltamtl.bench.sharing import ROWS


def _f(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _m(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e6:.2f}"


def _figures(report: Mapping, section: str) -> list[str]:
    out = []
    for fig in report.get("figures", []):
        if fig["section"] == section:
            out += [f"![{fig['file']}]({fig['file']})", "", f"*{fig['caption']}*", ""]
    return out


def _prov(sec: Mapping) -> list[str]:
    p = sec.get("provenance", {})
    return [f"Produced by `{p.get('command')}` (config `{p.get('config')}`, commit {p.get('commit')}).", ""]


def _model_lines(m: Mapping) -> list[str]:
    lines = [f"Model: {m['source']} bundle `{m['bundle']}`: {len(m['tasks'])} tasks "
             f"({', '.join(m['tasks'])}), {m['img_size']}x{m['img_size']} input, {m['tokens']} tokens, "
             f"{m['depth']} blocks of width {m['embed_dim']}; keyframe every "
             f"{m['policy']['keyframe_interval']} frames, boundaries {m['policy']['boundaries']}."]
    for note in m.get("notes", []):
        lines.append(f"*{note}*")
    if m["source"] == "trained":
        lines.append("*A model trained for minutes is weak enough that large thresholds barely "
                     "move its metrics, so threshold selection keeps more of them than it would on "
                     "a fully trained model: its densities and MACs are likely lower than a trained "
                     "bundle's (`make quant`), which the bench uses when one exists.*")
    if m.get("threshold_selection", {}).get("threshold_rel"):
        sel = m["threshold_selection"]
        lines.append(f"Thresholds (relative to each block's mean |input|, chosen as "
                     f"`deltamtl sharing-report` does on {sel['val_clips']} val clips, margin "
                     f"{sel['margin']}): {sel['threshold_rel']}.")
    return lines + [""]


def footage(f: Mapping) -> list[str]:
    lines = ["## 1. Real footage beside synthetic", "", *_prov(f), *_model_lines(f["model"]),
             f"**The headline uses `{f['headline_kind']}` footage** (real photos under a handheld "
             "pan): synthetic clips repeat more pixels between frames and flatter temporal reuse.",
             "", "dW density per sub-task (S_w): "
             + ", ".join(f"{t} {100 * v:.2f}%" for t, v in f["dw_density"].items()), "",
             "| footage | clips | frames | keyframe site MMACs | between-keyframes site MMACs | "
             "mean site MMACs | dense site MMACs | today's engine Mcycles between keyframes "
             f"({f['lanes']} lanes) |", "|---|---|---|---|---|---|---|---|"]
    for kind, r in f["kinds"].items():
        lines.append(f"| {kind} | {r['clips']} | {r['frames']} | {_m(r['site_macs_keyframe'])} | "
                     f"{_m(r['site_macs_other'])} | {_m(r['site_macs_mean'])} | "
                     f"{_m(r['dense_site_macs'])} | {_m(r['cycles_other'])} |")
    lines += ["", "Activation densities (kept delta non-zeros / elements, block sites, pooled):", "",
              "| footage | " + " | ".join(f"{t} TASK | {t} TEMPORAL" for t in
                                          next(iter(f["kinds"].values()))["act_density"])
              + " | patch embedding TEMPORAL |",
              "|---|" + "---|" * (2 * len(next(iter(f["kinds"].values()))["act_density"]) + 1)]
    for kind, r in f["kinds"].items():
        cells = []
        for _t, modes in r["act_density"].items():
            cells += [_f(modes["TASK"], 3), _f(modes["TEMPORAL"], 3)]
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {_f(r['embed_temporal_density'], 3)} |")
    lines += ["", "Per clip:", "", "| clip | kind | frames | keyframe MMACs | between MMACs |",
              "|---|---|---|---|---|"]
    for c in f["clips"]:
        lines.append(f"| {c['name']} | {c['kind']} | {c['frames']} | {_m(c['site_macs_keyframe'])} | "
                     f"{_m(c['site_macs_other'])} |")
    return lines + [""]


def sharing(s: Mapping) -> list[str]:
    lines = ["## 2. Compute sharing", "", *_prov(s)]
    run = s["sharing_run"]
    if run["present"]:
        lines += [f"The finished sharing run (`{run['path']}`):", "", run["markdown"], ""]
    else:
        lines += [f"The finished sharing run's table is absent (`{run['path']}` does not exist); "
                  f"make it with `{run['how']}`.", ""]
    lines += [f"Analytic MACs and parameters per image at the densities measured on {s['density_source']}. "
              "Densities carry over as fractions, the same in every block (docs/bench.md).", ""]
    pub = s["published_nyud"]
    for kind, by_cfg in s["analytic"].items():
        lines += [f"**{kind} densities**", "",
                  "| row | " + " | ".join(f"{cfg} GMACs | {cfg} params (M)" for cfg in by_cfg)
                  + " | published ViT-B NYUD-v2 GFLOPs | published params (M) |",
                  "|---|" + "---|" * (2 * len(by_cfg) + 2)]
        for row in ROWS:
            cells = []
            for a in by_cfg.values():
                cells += [_f(a["rows"][row]["gmacs"], 2), _f(a["rows"][row]["params_m"], 2)]
            lines.append(f"| {row} | " + " | ".join(cells)
                         + f" | {pub[row]['gflops']} (published) | {pub[row]['params_m']} (published) |")
        lines.append("")
    return lines


def engine(e: Mapping) -> list[str]:
    lines = ["## 3. Engine", "", f"**{e['note']}.**", "", *_prov(e), *_model_lines(e["model"])]
    lim = e["limits"]
    if e.get("simulated"):
        lines += [f"RTL core under Verilator (CI maxima: {lim['max_tokens']} tokens, widths up to "
                  f"{lim['max_in']}, {lim['lanes']} lanes x {lim['token_rows']} token rows, "
                  f"{lim['beat_words']} word(s) a beat): {e['jobs_replayed']} site jobs of "
                  f"{e['frames']} frames replayed, {e['mismatching_jobs']} mismatching "
                  f"(bench outcome {e['outcome']}); build {e['build_seconds']} s, simulation "
                  f"{e['sim_seconds']} s.", ""]
    else:
        lines += [f"RTL simulation skipped: {e.get('simulation_skipped')}. Cycles below are the "
                  "cycle model's.", ""]
    lines += ["| run | modes | cycles source | mean cycles per frame | per frame | MACs per frame | "
              "MAC utilisation | cycle model error (max per job, total) |", "|---|---|---|---|---|---|---|---|"]
    for name in ("delta", "dense"):
        r = e[name]
        per = r.get("sim_cycles_per_frame", r["model_cycles_per_frame"])
        err = r.get("cycle_model_error")
        err_s = f"{100 * err['max_abs_per_job']:.2f}%, {100 * err['total']:+.2f}%" if err else "-"
        lines.append(f"| {name} | {', '.join(r['modes'])} | {r['cycles_source']} | {r['cycles_mean']:.0f} | "
                     f"{per} | {r['macs_per_frame']} | {100 * r['mac_utilisation']:.1f}% | {err_s} |")
    lines += ["", f"Delta over dense, mean cycles per frame: **{e['delta_vs_dense_cycles']:.3f}**. "
              f"MAC utilisation = executed MACs / (cycles x {e['peak_macs_per_cycle']}, lanes x token rows).", "",
              "Old engine against scaled, same jobs (the pre-issue-18 engine from its cycle model, "
              f"{lim['lanes']} lanes, one non-zero per cycle):", "",
              "| run | scaled mean cycles per frame | pre-issue-18 mean cycles per frame | scaled / old | "
              "old MAC utilisation (of L) |", "|---|---|---|---|---|"]
    for name in ("delta", "dense"):
        r = e[name]
        lines.append(f"| {name} | {r['cycles_mean']:.0f} | {r['v1_cycles_mean']:.0f} | "
                     f"{r['scaled_over_v1_cycles']:.3f} | {100 * r['v1_mac_utilisation']:.1f}% |")
    lines.append("")
    return lines


def board(b: Mapping) -> list[str]:
    head = b["projections"][b["headline_kind"]]
    eng = head["engines"]
    lines = ["## 4. Board projection", "", *_prov(b),
             f"`{head['config']}`, 4 tasks, keyframe every {head['keyframe_interval']} frames, "
             f"{head['tokens']} tokens at {head['clock_hz'] / 1e6:.0f} MHz; DDR "
             f"{head['ddr_bytes_per_s'] / 1e9} GB/s reachable; int8 peak {head['int8_peak_macs_per_s'] / 1e12:.2f} "
             f"TMAC/s ({head['int8_peak_macs_per_s'] / (2 * head['clock_hz']):.0f} DSP48E2 x 2 MACs x "
             f"{head['clock_hz'] / 1e6:.0f} MHz). Time per frame = max(cycles / clock, DDR bytes / "
             "bandwidth). Engines, side by side in this run (the headline is the last):", ""]
    lines += [f"* `{n}`: {e['label']} ({e['peak_macs_per_cycle']} MACs/cycle peak)" for n, e in eng.items()]
    lines += ["", "| densities from | engine | frame | Mcycles | DDR MB | MMACs | ms (cycles) | ms (DDR) | "
              "bound | frames/s | MAC utilisation | fraction of int8 peak |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, p in b["projections"].items():
        for name, e in p["engines"].items():
            for frame in ("keyframe", "other", "mean"):
                r = e[frame]
                lines.append(f"| {kind} | {name} | {frame} | {r['cycles'] / 1e6:.2f} | {r['bytes'] / 1e6:.1f} | "
                             f"{r['macs'] / 1e6:.0f} | {r['ms_cycles']:.1f} | {r['ms_ddr']:.1f} | {r['bound']} | "
                             f"{r['frames_per_s']:.2f} | {100 * r['mac_utilisation']:.1f}% | "
                             f"{100 * r['fraction_of_int8_peak']:.2f}% |")
    phases = [k for k in next(iter(eng.values()))["mean"] if k.startswith("cycles_")]
    lines += ["", f"Where the cycles of a mean frame go ({b['headline_kind']} densities), Mcycles per phase "
              "(contract/cycle_model.py):", "",
              "| engine | " + " | ".join(k.removeprefix("cycles_") for k in phases) + " |",
              "|---|" + "---|" * len(phases)]
    for name, e in eng.items():
        lines.append(f"| {name} | " + " | ".join(f"{e['mean'][k] / 1e6:.2f}" for k in phases) + " |")
    d = head["densities"]
    lines += ["", f"Tile-union densities at T = {d['union_token_rows']} ({b['headline_kind']}; inputs "
              "non-zero in any token of a tile, over tiles x inputs, block sites): "
              + "; ".join(f"{t} " + ", ".join(f"{m} {_f(v, 3)}" for m, v in modes.items())
                          for t, modes in d["union"].items()) + "."]
    h = head["host"]
    lines += ["", f"Host side per frame ({b['headline_kind']} densities): float work "
              f"{h['float_macs_per_frame'] / 1e6:.1f} MMACs = {h['float_flops_per_frame'] / 1e6:.1f} MFLOPs "
              "(attention cores and heads of 4 tasks); element-wise: "
              + ", ".join(f"{k.replace('_elems', '')} {v / 1e6:.2f} M" for k, v in h["elementwise_per_frame"].items())
              + " elements.",
              f"Register accesses per frame: {h['register_accesses_per_frame']:.0f} "
              f"({h['register_accesses_source']}) x {1e6 * h['assumed_s_per_register_access']:.0f} us "
              "per access (assumed: published PYNQ-Z1 MMIO write from Python) = "
              f"{h['register_ms_per_frame']:.1f} ms.", ""]
    d = b["driver"]
    lines.append(f"Virtual ZCU104: {d.get('note') or d.get('error') or 'steady ' + _f(d.get('steady_per_frame'), 1) + ' accesses per frame'}.")
    lines += ["", "Published ZCU102 designs (single-task; published figures):", "",
              "| design | model | latency ms | GOPS |", "|---|---|---|---|"]
    for r in b["published_zcu102"]:
        lines.append(f"| {r['name']} (published) | {r['model']} | {r['latency_ms']} | {_f(r['gops'], 0)} |")
    hv = b["heatvit"]
    lines += ["", f"HeatViT's GOPS on the roofline is dense-equivalent: our MAC count of DeiT-S's encoder "
              f"({hv['deit_s_encoder_macs'] / 1e9:.2f} GMACs) over its published {hv['published_latency_ms']} ms "
              f"= {hv['dense_equivalent_gops']:.0f} GOPS (it prunes tokens, so it executes fewer).", "",
              "Density sweep (same density for every task and mode; tile unions assumed "
              "1 - (1 - d)^T, as if inputs changed independently):", "",
              "| engine | density | assumed union | keyframe Mcycles | frame Mcycles | frame MB | frame ms |",
              "|---|---|---|---|---|---|---|"]
    for r in b["sweep"]:
        lines.append(f"| {r['engine']} | {r['act_density']} | {r['assumed_union_density']:.3f} | "
                     f"{r['keyframe_cycles'] / 1e6:.2f} | {r['frame_cycles'] / 1e6:.2f} | "
                     f"{r['frame_bytes'] / 1e6:.1f} | {r['frame_ms']:.1f} |")
    return lines + [""]


def cpu(c: Mapping) -> list[str]:
    lines = ["## 5. Emulation and CPU", "", *_prov(c),
             f"The runner streaming a {c['model']['img_size']}px 4-task synthetic clip, median of repeats "
             f"(goal {c['goal_frames_per_s']} frames/s on 2 cores):", "",
             "| backend | frames | frames/s | executor share of wall time | jobs per frame |", "|---|---|---|---|---|"]
    for b, r in c["backends"].items():
        lines.append(f"| {b} | {r['frames']} | {r['frames_per_s']:.1f} | {100 * r['executor_share']:.0f}% | "
                     f"{r['jobs_per_frame']:.0f} |")
    p = c["paths"]
    lines.append("")
    if "skipped" in p:
        lines.append(f"CPU paths: skipped ({p['skipped']}).")
    else:
        lines += [f"Dense PyTorch (4 tasks, merged weights, batch 1): {p['dense_pytorch_seconds']:.3f} s "
                  f"for {p['frames']} frames ({p['dense_pytorch_frames_per_s']:.1f} frames/s), median of "
                  f"{p['repeats']}.", "", "| delta path | seconds | over dense PyTorch |", "|---|---|---|"]
        for name, sec in p["delta_paths_seconds"].items():
            lines.append(f"| {name} | {sec:.3f} | {sec / p['dense_pytorch_seconds']:.2f} |")
        lines += ["", f"Best CPU delta path: {p['best_delta_path']}, wall time "
                  f"**{p['best_over_dense_wall_ratio']:.2f}x** dense PyTorch (for information)."]
    s = c["stream"]
    lines += ["", "`deltamtl stream`: " + (s.get("note") or s.get("error") or ", ".join(
        f"{b} {r['frames_per_s']:.1f} frames/s" for b, r in s.items() if isinstance(r, dict))) + "."]
    return lines + [""]


# what each headline key means, for the reader of bench.md (bench.json keeps the keys)
LABELS = {
    "headline_footage": "footage the headline uses",
    "site_mmacs_between_keyframes": "site MMACs per frame between keyframes, 4 tasks (headline model)",
    "site_mmacs_keyframe": "site MMACs per keyframe, 4 tasks (headline model)",
    "engine_delta_over_dense_cycles": "scaled engine: delta over dense cycles per frame (engine model)",
    "engine_scaled_over_v1_cycles": "scaled engine over the pre-issue-18 engine, cycles per frame (delta run)",
    "engine_cycles_source": "engine cycles from",
    "cycle_model_max_error": "cycle model's largest error on one job against the RTL simulation",
    "board_engine": "engine the board headline projects",
    "board_frames_per_s": "projected ZCU104 frames/s, vit-tiny-zcu104, 4 tasks, K=5, headline engine",
    "board_frames_per_s_by_engine": "projected frames/s per engine (headline footage)",
    "board_bound": "what bounds the projected frame (headline footage)",
    "board_fraction_of_int8_peak": "fraction of the int8 DSP peak (headline footage)",
    "cpu_frames_per_s": "frames/s of the runner on 2 cores (goal 20)",
    "best_delta_over_dense_pytorch_wall": "best CPU delta path's wall time over dense PyTorch",
    "vit_b_nyud_gmacs": "vit-b-nyud analytic GMACs at the headline densities (paper: 314.14 / "
                        "314.14 / 186.88 / 107.87, published)",
}


def render(report: Mapping) -> str:
    prov = report["provenance"]
    lines = ["# Benchmarks", "", f"Command: `{prov['command']}`; commit {prov['commit']}; machine: "
             f"{prov['machine']}; {'quick (CI) run' if report['quick'] else 'full run'}, "
             f"{report['total_seconds']} s in all ({', '.join(f'{k} {v} s' for k, v in report['seconds'].items())}).",
             "", "Published figures are labelled *(published)*; everything else was measured or "
             "computed by this run (docs/bench.md says how).", "", "## Headline", ""]
    for k, v in report["headline"].items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk}: {_f(vv)}" for kk, vv in v.items())
        lines.append(f"* {LABELS.get(k, k)}: {_f(v, 3)}")
    lines.append("")
    figs = {"figures": report.get("figures", [])}
    for name, fn in (("footage", footage), ("sharing", sharing), ("engine", engine),
                     ("board", board), ("cpu", cpu)):
        if name in report:
            lines += fn(report[name])
            lines += _figures(figs, name)
    return "\n".join(lines) + "\n"
