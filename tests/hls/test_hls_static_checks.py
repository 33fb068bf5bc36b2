"""Static checks of the HLS kernels (deltamtl.hls.static_checks): the project's sources
pass, and each rule fails on a deliberately bad snippet of its own (docs/hls.md, "II and
dependences")."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from deltamtl.hls import static_checks as sc

HEADER = """\
#include <stdint.h>
constexpr int L = 8;
constexpr int WIDTH = 16;
"""


def _run(tmp_path: Path, body: str, tcl: str | None = None) -> list[sc.Finding]:
    src = tmp_path / "k.cpp"
    src.write_text(HEADER + textwrap.dedent(body))
    tcl_path = None
    if tcl is not None:
        tcl_path = tmp_path / "run_hls.tcl"
        tcl_path.write_text(tcl)
    return sc.run_checks([src], tcl_path, headers=[])


def _rules(findings: list[sc.Finding]) -> list[str]:
    return sorted(f.rule for f in findings)


def test_project_kernels_pass_every_check():
    findings = sc.run_checks(sc.kernel_files())
    assert findings == [], "\n".join(map(str, findings))
    assert sc.main([]) == 0


# ---- unroll-bank ---------------------------------------------------------------------
BANKS = """
uint64_t acc[L][64];
void k(int p, uint64_t out[L]) {
#pragma HLS ARRAY_PARTITION variable = acc type = complete dim = 1
#pragma HLS RESET variable = acc off
  for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
    out[l] = acc[%s][p];
  }
}
"""


def test_unroll_bank_flags_a_run_time_bank(tmp_path):
    found = _run(tmp_path, BANKS % "(p + l) % L")
    assert _rules(found) == ["unroll-bank"], found
    assert "acc[(p + l) % L]" in found[0].message and "p" in found[0].message


def test_unroll_bank_accepts_the_unroll_variable(tmp_path):
    assert _run(tmp_path, BANKS % "l") == []
    assert _run(tmp_path, BANKS % "(l + 3) % L") == []


def test_unroll_bank_checks_only_the_partitioned_dimension(tmp_path):
    body = BANKS.replace("acc[%s][p]", "acc[l][p + %s]")
    assert _run(tmp_path, body % "p") == []


def test_unroll_bank_follows_helpers_called_in_an_unrolled_loop(tmp_path):
    body = """
uint64_t acc[L][64];
inline void put(uint32_t pos, uint64_t v) { acc[pos % L][pos / L] = v; }
void k(uint32_t n, uint64_t v) {
#pragma HLS ARRAY_PARTITION variable = acc type = complete dim = 1
#pragma HLS RESET variable = acc off
  for (int l = 0; l < L; l++) {
#pragma HLS UNROLL
    put(n + l, v);
  }
}
"""
    found = _run(tmp_path, body)
    assert _rules(found) == ["unroll-bank"] and "put()" in found[0].message, found


def test_cli_exit_status(tmp_path, capsys):
    bad = tmp_path / "bad.cpp"
    bad.write_text(HEADER + "int f(int a, int b) { return a / b; }\n")
    assert sc.main([str(bad), "--tcl", str(tmp_path / "none.tcl")]) == 1
    assert "[divmod]" in capsys.readouterr().out


# ---- maxi ----------------------------------------------------------------------------
MAXI = """
void k(uint64_t* gmem, int n, uint64_t* out) {
#pragma HLS INTERFACE mode = m_axi port = gmem bundle = gmem
  for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
    %s
  }
}
"""


def test_maxi_flags_a_conditional_access(tmp_path):
    found = _run(tmp_path, MAXI % "if (i & 1) out[i] = gmem[i];")
    assert _rules(found) == ["maxi"] and "if" in found[0].message, found
    found = _run(tmp_path, MAXI % "out[i] = (i & 1) ? gmem[i] : 0;")
    assert _rules(found) == ["maxi"] and "conditional" in found[0].message, found


def test_maxi_flags_two_accesses_per_iteration(tmp_path):
    found = _run(tmp_path, MAXI % "out[i] = gmem[2 * i] + gmem[2 * i + 1];")
    assert "2 times per iteration" in " ".join(f.message for f in found), found


def test_maxi_flags_an_access_hidden_in_a_helper(tmp_path):
    helper = """
uint64_t fetch_one(uint64_t* gmem, int i) {
  if (i > 3) return gmem[i];
  return 0;
}
uint64_t via(uint64_t* gmem, int i) { return fetch_one(gmem, i); }
"""
    found = _run(tmp_path, helper + MAXI % "out[i] = 1; if (i) out[i] = via(gmem, i);")
    assert any(f.rule == "maxi" for f in found), found


def test_maxi_accepts_one_unconditional_access(tmp_path):
    # a ternary inside the index only selects the address: the access itself is unconditional
    assert _run(tmp_path, MAXI % "if (i == 7) break;\n    out[i] = gmem[i > 2 ? i : 0];") == []


# ---- reset ---------------------------------------------------------------------------
RESET = """
uint64_t state_a[64];
void k(int i, uint64_t v) {
%s
  static int seen[4];
  state_a[i] = v;
  seen[i & 3] = 1;
}
"""


def test_reset_flags_state_arrays_without_reset_off(tmp_path):
    found = _run(tmp_path, RESET % "#pragma HLS RESET variable = state_a off")
    assert _rules(found) == ["reset"] and "seen" in found[0].message, found
    both = "#pragma HLS RESET variable = state_a off\n#pragma HLS RESET variable = seen off"
    assert _run(tmp_path, RESET % both) == []


def test_reset_flags_config_rtl_reset_state(tmp_path):
    both = "#pragma HLS RESET variable = state_a off\n#pragma HLS RESET variable = seen off"
    found = _run(tmp_path, RESET % both, tcl="config_rtl -reset state -reset_level low\n")
    assert _rules(found) == ["reset"] and "config_rtl" in found[0].message, found
    assert _run(tmp_path, RESET % both, tcl="config_rtl -reset control -reset_level low\n") == []


def test_project_tcl_does_not_reset_state():
    assert "-reset control" in sc.TCL.read_text()


# ---- divmod --------------------------------------------------------------------------
DIV = """
constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }
template <int D>
int k(int k_, int n) {
  %s
}
"""


def test_divmod_flags_a_run_time_divisor(tmp_path):
    found = _run(tmp_path, DIV % "return k_ / n;")
    assert _rules(found) == ["divmod"] and "`n`" in found[0].message, found
    assert _rules(_run(tmp_path, DIV % "return k_ % (n + 1);")) == ["divmod"]


def test_divmod_flags_a_constexpr_divider_with_a_run_time_argument(tmp_path):
    found = _run(tmp_path, DIV % "return ceil_div(k_, n);")
    assert _rules(found) == ["divmod"] and "ceil_div" in found[0].message, found


def test_divmod_accepts_constant_divisors(tmp_path):
    body = "return k_ / WIDTH + k_ % L + k_ / (2 * L) + k_ % D + ceil_div(n, WIDTH) + k_ / 8;"
    assert _run(tmp_path, DIV % body) == []


@pytest.mark.parametrize("snippet", ["k_ /= n; return k_;", "return (k_ + 1) / n;"])
def test_divmod_other_spellings(tmp_path, snippet):
    assert _rules(_run(tmp_path, DIV % snippet)) == ["divmod"]


# ---- pragma ----------------------------------------------------------------------------
PRAGMAS = """
uint64_t mem[64];
void k(int n) {
#pragma HLS RESET variable = mem off
%s
  for (int i = 0; i < n; i++) {
#pragma HLS PIPELINE II = %s
%s
    mem[i] = mem[i] + 1;
  }
}
"""
DEP = "#pragma HLS DEPENDENCE variable = mem type = inter dependent = false"


def test_pragma_flags_a_pipeline_above_ii_1(tmp_path):
    found = _run(tmp_path, PRAGMAS % ("", "2", ""))
    assert _rules(found) == ["pragma"] and "II = 1" in found[0].message, found


def test_pragma_flags_an_unexplained_dependence_false(tmp_path):
    found = _run(tmp_path, PRAGMAS % ("", "1", DEP))
    assert _rules(found) == ["pragma"] and "no comment" in found[0].message, found


def test_pragma_accepts_a_dependence_false_with_its_reason(tmp_path):
    why = "// each i is read and written once: DEPENDENCE false is exact"
    assert _run(tmp_path, PRAGMAS % (why, "1", DEP)) == []


def test_pragma_flags_dependence_outside_a_pipelined_loop(tmp_path):
    body = """
    uint64_t mem[64];
    void k(int n) {
    #pragma HLS RESET variable = mem off
      // DEPENDENCE false: each i once
      for (int i = 0; i < n; i++) {
        mem[i] = 0;
    @DEP@
      }
    }
    """.replace("@DEP@", DEP)
    found = _run(tmp_path, body)
    assert _rules(found) == ["pragma"] and "leading pragmas" in found[0].message, found
