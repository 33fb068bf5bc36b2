"""Session-wide test setup: report the random seed and seed the global generators from it
(see tests/helpers/seeding.py)."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest

from tests.helpers.seeding import SEED, seed_for


def pytest_report_header(config: pytest.Config) -> str:
    return f"DELTAMTL_TEST_SEED={SEED}"


@pytest.fixture(autouse=True)
def _session_seed(request: pytest.FixtureRequest) -> None:
    # captured output is shown for failing tests only: that is where the seed is needed
    print(f"DELTAMTL_TEST_SEED={SEED}")
    # Global generators, seeded per test from the session seed and the test's node id:
    # a test that draws from torch.rand / np.random / random without its own generator
    # still replays from DELTAMTL_TEST_SEED alone, whatever ran before it.
    seed = seed_for("global", request.node.nodeid)
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:  # contract/rtl tests never import torch: do not pay for it
        sys.modules["torch"].manual_seed(seed)
