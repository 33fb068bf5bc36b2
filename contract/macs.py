"""The MACs of one site job: the one rule every count in the project uses.

What the core multiplies (docs/hls.md, "Datapath"; ``golden_core.execute_job``), from the
job's header fields (mode, P tokens, I in, O out, nnz(dW)) and its activation non-zero
count ``nnz_act`` (what the core reports: non-zero inputs x in DENSE, kept deltas d in
TEMPORAL and TASK):

========  ===============================  =================================================
mode      MACs                             what runs
========  ===============================  =================================================
DENSE     nnz(x) * O                       activation-sparse pass of x over the weight bank
                                           (every non-zero x is the delta against 0); with
                                           dW the bank is patched first, W_b += dW: adds,
                                           no multiplications
TEMPORAL  nnz(d) * O                       activation-sparse pass of d over the bank, patched
                                           with dW like DENSE when the job carries one
TASK      nnz(d) * O + P * nnz(dW)         d W_b^T over the resident base weights, then the
                                           weight-sparse pass x_k dW^T (only with dW)
========  ===============================  =================================================

A dense single-task model is the DENSE row at nnz(x) = P * I: P * I * O. The counts are
plain arithmetic, so analytic callers may pass expected (float) counts -- a density times
the element count -- and get expected MACs back.
"""

from __future__ import annotations

from deltamtl.contract.formats import Mode


def job_macs(mode: Mode | int, tokens: int, in_dim: int, out_dim: int, nnz_dw: float,
             nnz_act: float) -> float:
    """MACs the core executes for one job (module docstring); ints in, int out."""
    mode = Mode(int(mode))
    if not 0 <= nnz_act <= tokens * in_dim:
        raise ValueError(f"nnz_act {nnz_act!r} outside [0, P*I = {tokens * in_dim}]")
    if not 0 <= nnz_dw <= out_dim * in_dim:
        raise ValueError(f"nnz_dw {nnz_dw!r} outside [0, O*I = {out_dim * in_dim}]")
    act_pass = nnz_act * out_dim
    if mode == Mode.TASK:
        return act_pass + tokens * nnz_dw
    return act_pass  # DENSE, TEMPORAL: dW is merged into the bank (the patch phase)


def dense_macs(tokens: int, in_dim: int, out_dim: int) -> int:
    """MACs of the site in a dense model: the DENSE job with every input non-zero."""
    return job_macs(Mode.DENSE, tokens, in_dim, out_dim, 0, tokens * in_dim)
