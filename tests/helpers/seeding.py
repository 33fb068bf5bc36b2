"""One random seed per test session: fresh inputs every run, replayable.

A failing test prints ``DELTAMTL_TEST_SEED=<n>`` (the autouse fixture in conftest.py);
``DELTAMTL_TEST_SEED=<n> make test`` replays that run's inputs.
"""

from __future__ import annotations

import os
import secrets

SEED = int(os.environ.get("DELTAMTL_TEST_SEED", secrets.randbelow(1 << 30)))
