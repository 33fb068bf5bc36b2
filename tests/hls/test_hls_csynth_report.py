"""The csynth report check of `make hls` (deltamtl.hls.csynth_report), on small
hand-written report files made in the test's tmp dir, and on the real reports where Vitis
HLS exists."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from deltamtl.hls import csynth_report as cr

ROOT = Path(__file__).resolve().parents[2]


def _xml(top: str, clock: float, loops: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<profile>
  <UserAssignments><unit>ns</unit><TopModelName>{top}</TopModelName>
    <TargetClockPeriod>3.33</TargetClockPeriod></UserAssignments>
  <PerformanceEstimates>
    <SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>{clock}</EstimatedClockPeriod>
    </SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency><Best-caseLatency>4</Best-caseLatency></SummaryOfOverallLatency>
    <SummaryOfLoopLatency>{loops}</SummaryOfLoopLatency>
  </PerformanceEstimates>
</profile>
"""


def _loop(name: str, ii: int | None, inner: str = "") -> str:
    pipe = f"<PipelineII>{ii}</PipelineII><PipelineDepth>6</PipelineDepth>" if ii else ""
    return (f"<{name}><TripCount><range><min>0</min><max>64</max></range></TripCount>"
            f"<Latency><range><min>0</min><max>70</max></range></Latency>{pipe}{inner}</{name}>")


def _commit_reports(tmp_path: Path, pack_ii: int = 1, clock: float = 3.01,
                    drop: str | None = None) -> Path:
    d = tmp_path / "report"
    d.mkdir(exist_ok=True)
    names = [n for n in cr.MAIN_LOOPS["commit"] if n != drop]
    top = [n for n in names if n not in ("pack_loop", "write_words_loop")]
    (d / "commit_csynth.xml").write_text(
        _xml("commit", clock, "".join(_loop(n, 1) for n in top) + _loop("drain", 1)))
    if "pack_loop" in names:  # Vitis outlines pipelined loops of sub-functions into modules
        (d / "pack_rows_csynth.xml").write_text(_xml("pack_rows", 2.5, _loop("pack_loop", pack_ii)))
    if "write_words_loop" in names:
        (d / "write_words_csynth.xml").write_text(
            _xml("write_words", 2.9, _loop("outer", None, _loop("write_words_loop", 1))))
    return d


def test_all_main_loops_at_ii_1_and_clock_met(tmp_path):
    rep = cr.read_report(_commit_reports(tmp_path), "commit")
    assert rep.clock_ns == pytest.approx(3.01)
    assert cr.check(rep) == []
    nested = rep.find("write_words_loop")
    assert [lp.name for lp in nested] == ["outer_write_words_loop"] and nested[0].ii == 1
    assert rep.find("outer")[0].ii is None
    assert "pack_loop" in cr.table(rep)
    assert cr.main([str(tmp_path / "report"), "--kernel", "commit"]) == 0


def test_a_main_loop_above_ii_1_fails(tmp_path):
    errors = cr.check(cr.read_report(_commit_reports(tmp_path, pack_ii=2), "commit"))
    assert len(errors) == 1 and "pack_loop" in errors[0] and "II = 2" in errors[0]
    assert cr.main([str(tmp_path / "report"), "--kernel", "commit"]) == 1


def test_a_slow_clock_fails(tmp_path):
    errors = cr.check(cr.read_report(_commit_reports(tmp_path, clock=3.6), "commit"))
    assert len(errors) == 1 and "3.600 ns > 3.33 ns" in errors[0]


def test_a_missing_main_loop_fails(tmp_path):
    errors = cr.check(cr.read_report(_commit_reports(tmp_path, drop="pack_loop"), "commit"))
    assert errors == ["commit: loop pack_loop not in the csynth report"]


def test_no_report_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        cr.read_report(tmp_path, "core")


def test_main_loops_are_labels_of_the_sources():
    hls = ROOT / "hls"
    text = "".join(p.read_text() for p in [*hls.glob("*.cpp"), *(hls / "include").glob("*.h")])
    for kernel, labels in cr.MAIN_LOOPS.items():
        for label in labels:
            assert f"{label}:" in text, (kernel, label)


@pytest.mark.vitis
@pytest.mark.skipif(shutil.which("vitis_hls") is None,
                    reason="vitis_hls not on PATH (source <Vitis>/settings64.sh; run make hls)")
@pytest.mark.parametrize("kernel", sorted(cr.MAIN_LOOPS))
def test_real_csynth_reports_meet_ii_1_and_300_mhz(kernel):
    report = ROOT / "build" / "hls_prj" / kernel / "sol" / "syn" / "report"
    if not report.is_dir():
        pytest.skip(f"{report} missing: run `make hls` first")
    rep = cr.read_report(report, kernel)
    print(cr.table(rep))
    assert cr.check(rep) == []
