"""int8 against float: every task's metrics of the same model in ``float`` and ``int`` mode
on the same clips, and whether the int8 model is within the allowed relative loss.
"""

from __future__ import annotations

from typing import Any

from deltamtl.model.quant.quantizer import Quantizer


# ---------------------------------------------------------------------------------------
# Accuracy: quantised vs float on every task metric
# ---------------------------------------------------------------------------------------
def compare_accuracy(q: Quantizer, dataset: Any, batch_size: int = 16,
                     quant_mode: str = "int") -> dict[str, dict[str, Any]]:
    """Float and quantised metrics of every task and the relative change of each.

    ``rel_change`` is (quant - float) / |float|, signed so that positive is worse for
    lower-is-better metrics too (``worse_rel``); acceptance is worse_rel <= 2 % on each
    task's primary metric.
    """
    from deltamtl.model.training.evaluate import evaluate_model
    from deltamtl.model.training.metrics import PRIMARY_METRIC

    tasks = q.mt.tasks
    q.set_mode("float")
    f = evaluate_model(q.mt, dataset, tasks, batch_size=batch_size)
    q.set_mode(quant_mode)
    try:
        z = evaluate_model(q.mt, dataset, tasks, batch_size=batch_size)
    finally:
        q.set_mode("float")
    out: dict[str, dict[str, Any]] = {}
    for t in tasks:
        entry = PRIMARY_METRIC[t]
        key, higher = entry if isinstance(entry, tuple) else (entry, True)
        fv, zv = f[t][key], z[t][key]
        worse = (fv - zv) / abs(fv) if higher else (zv - fv) / abs(fv)
        out[t] = {"metric": key, "float": fv, "quant": zv, "worse_rel": worse,
                  "pass": bool(worse <= 0.02), "float_all": f[t], "quant_all": z[t]}
    return out
