"""Session-wide test setup: report the random seed (see tests/helpers/seeding.py)."""

from __future__ import annotations

import pytest

from tests.helpers.seeding import SEED


def pytest_report_header(config: pytest.Config) -> str:
    return f"DELTAMTL_TEST_SEED={SEED}"


@pytest.fixture(autouse=True)
def _show_seed() -> None:
    # captured output is shown for failing tests only: that is where the seed is needed
    print(f"DELTAMTL_TEST_SEED={SEED}")
