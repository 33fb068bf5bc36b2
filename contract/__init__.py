"""The integer and interface contract and its bit-exact reference: defined here once,
imported or generated everywhere else. This package imports no other deltamtl package.

Modules, from the bits up:

* ``formats``     number formats, the one rounding rule, delta encoding, site modes, job flags
* ``packets``     AXI4-Stream packet fields and section order of the compute core; core status
* ``descriptor``  the DDR job descriptor and its regions (read by fetch and commit)
* ``registers``   the kernels' status bits and AXI4-Lite register map
* ``limits``      compiled maxima of one core build
* ``jobs``        one site job and its result as numpy data (SiteJob, CsrDelta, JobResult)
* ``encoding``    SiteJob <-> stream packets
* ``golden_core`` the bit-exact reference of one site job (and of a packet stream)
* ``chain``       job chains: one launch per frame (links, doorbell, status array)
* ``ddr_image``   jobs laid out in a DDR buffer as fetch/commit see them; .dmtd case files
* ``cycle_model`` cycles of one job on the RTL core (held to simulation)
* ``vectors``     .dmtv test-vector files and the random vector generator
* ``codegen``     writes hls/generated/*.h and rtl/generated/*.sv from these modules
* ``atomic``      write-then-rename file helpers every level uses

Everything that two levels of the stack must agree on bit for bit lives in this package:
number formats, the one rounding rule, delta encoding, the three site modes, the
AXI4-Stream packet layout of the compute core, the DDR job descriptor read by the fetch
and commit kernels, their status bits and their AXI4-Lite register map.

C++ headers (hls/generated/contract.h) and the SystemVerilog package
(rtl/generated/deltamtl_contract_pkg.sv) are generated from it by
``deltamtl.contract.codegen``; a test regenerates them and fails if the checked-in copies drift.

Site arithmetic (docs/architecture.md, "The integer contract"), with P tokens, I inputs, O outputs:

* DENSE:    acc = X (W_b + dW)^T + bias;  Y = requant(acc);  state: x_ref := X, y_ref := acc.
* TEMPORAL: d = keep(X - x_ref, th);  x_ref += d;  y_ref += d (W_b + dW)^T;  Y = requant(y_ref).
* TASK:     d = keep(X - x_ref_b, th);  x_k = x_ref_b + d;
            acc = y_ref_b + d W_b^T + x_k dW^T + bias;  Y = requant(acc).
            The base state (x_ref_b, y_ref_b) is read, never written; (x_k, acc) can be emitted
            so a sub-task keyframe above its boundary stores its own references.

``bias`` is the job's bias section: the full bias b_k = b_b + db_k in DENSE, the bias delta
db_k in TASK (y_ref_b already holds b_b), absent in TEMPORAL (y_ref already holds it).
The accumulator is int32 with two's-complement wrap-around at every addition, so any
implementation that accumulates in int32 agrees with the numpy definition here.

Preconditions the producers of jobs guarantee (the export loader and the packers check
them; hardware is only required to stay inside its buffers when they are broken):
* W_b + dW stays inside int8. DENSE/TEMPORAL jobs with dW patch the int8 weight bank, so a
  merged weight outside int8 wraps modulo 256 (the golden model does the same).
* requantisation parameters lie in [0, REQ_MULT_MAX] x [REQ_SHIFT_MIN, REQ_SHIFT_MAX].
* dW non-zero words may come in any order (each carries its row); fetch sends CSR order.
"""
