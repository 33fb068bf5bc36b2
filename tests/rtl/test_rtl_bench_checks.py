"""The cocotb bench's AXI4-Stream hold rule (rtl/bench/cocotb_core.py AxisHoldRule), fed
sample by sample without a simulator: legal streams pass, each kind of violation fires.

The watchdog, the no-output-after-the-trailer check and the randomised power-up are shown
to fire inside the simulator (tests/rtl/test_rtl_cosim.py: watchdog_fires,
quiet_check_fires, test_rtl_random_x_initial).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import numpy as np
import pytest
from deltamtl.rtl import sim

from tests.helpers import seeding

pytestmark = pytest.mark.cosim  # make cosim


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    # the bench is a cocotb test module found by the simulator on BENCH_DIR, not a package
    # module; it imports cleanly outside a simulation (cocotb only needs one to run tests)
    spec = importlib.util.spec_from_file_location("cocotb_core", sim.BENCH_DIR / "cocotb_core.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cocotb_core", module)
    spec.loader.exec_module(module)
    return module


def _legal_stream(rng: np.random.Generator, n: int) -> list[tuple[int, int, int, int]]:
    """(valid, ready, data, last) per cycle from a source that obeys the rule: a word once
    offered stays until taken; ready is random (back-pressure)."""
    out = []
    word: tuple[int, int] | None = None
    for _ in range(n):
        if word is None and rng.random() < 0.7:
            word = (int(rng.integers(0, 1 << 63)), int(rng.random() < 0.2))
        ready = int(rng.random() < 0.5)
        valid = int(word is not None)
        data, last = word if word is not None else (int(rng.integers(0, 1 << 63)), 0)
        out.append((valid, ready, data, last))
        if valid and ready:
            word = None
    return out


def _feed(rule, stream) -> list[str]:
    for cycle, (valid, ready, data, last) in enumerate(stream):
        rule.sample(cycle, valid, ready, data, last)
    return rule.violations


def test_legal_streams_pass(bench: ModuleType) -> None:
    rng = seeding.rng("test_legal_streams_pass")
    stream = _legal_stream(rng, 2000)
    assert sum(v and not r for v, r, _d, _l in stream) > 100  # stalls were exercised
    assert _feed(bench.AxisHoldRule("s_axis"), stream) == []


@pytest.mark.parametrize("kind", ["data", "last", "valid"])
def test_each_violation_fires_at_its_cycle(bench: ModuleType, kind: str) -> None:
    rng = seeding.rng("test_each_violation_fires_at_its_cycle", kind)
    stream = _legal_stream(rng, 600)
    # a cycle that follows a stall (valid, not ready): the rule must hold there
    stalls = [k + 1 for k, (v, r, _d, _l) in enumerate(stream[:-1]) if v and not r]
    at = int(rng.choice(stalls))
    if kind == "valid":
        valid, ready, data, last = stream[at]
        stream[at] = (0, ready, data, last)  # offered again next cycle: a fresh offer
    else:
        # the source switches to another word at `at` and holds that one until it is taken
        flip = 1 << int(rng.integers(0, 64))
        k = at
        while True:
            valid, ready, data, last = stream[k]
            stream[k] = (valid, ready, data ^ flip, last) if kind == "data" else \
                (valid, ready, data, 1 - last)
            if ready or k + 1 == len(stream):
                break
            k += 1
    violations = _feed(bench.AxisHoldRule("m_axis"), stream)
    assert len(violations) == 1, violations
    assert f"cycle {at}" in violations[0] and violations[0].startswith("m_axis")


def test_words_may_change_after_a_beat_or_while_idle(bench: ModuleType) -> None:
    rule = bench.AxisHoldRule("s_axis")
    samples = [(1, 1, 0xA, 0), (1, 0, 0xB, 1), (1, 1, 0xB, 1),  # beat, stall, beat
               (0, 0, 0xC, 0), (0, 1, 0xD, 1),  # idle: anything goes
               (1, 0, 0xE, 0)]
    assert _feed(rule, samples) == []
    rule.reset()  # reset drops the pending word: a new one may follow
    assert rule.sample(6, 1, 1, 0xF, 1) is None
