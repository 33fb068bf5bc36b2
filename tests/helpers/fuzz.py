"""Hypothesis settings of the property (fuzz) tests: seeded from the session seed, bounded.

``fast(n)`` is the fast tier's budget (a few seconds a test); ``long(n)`` the ``slow``
marker's. Both draw from DELTAMTL_TEST_SEED (tests/helpers/seeding.py) through
``hypothesis.seed``, so a failing run replays with that seed; no example database is kept
and Hypothesis' own caches live in the temporary folder (nothing is written into the git
tree, no .hypothesis/ folder), and no deadline (a loaded
CI machine must not turn slowness into failures).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.configuration import set_hypothesis_home_dir

from tests.helpers.seeding import seed_for

# Hypothesis keeps caches (e.g. constants found in the sources) under ./.hypothesis by
# default: keep them out of the git tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "deltamtl-hypothesis")

_COMMON = dict(deadline=None, database=None, derandomize=False, print_blob=False,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                      HealthCheck.data_too_large, HealthCheck.filter_too_much])


def fast(n: int) -> settings:
    """The fast tier: ``n`` examples, shrinking kept (a failure prints its minimal input)."""
    return settings(max_examples=n, **_COMMON)


def long(n: int) -> settings:
    """The slow tier (``-m slow``): ``n`` examples; generate and shrink only (no explain phase)."""
    return settings(max_examples=n, phases=(Phase.explicit, Phase.generate, Phase.shrink), **_COMMON)


def seeded(name: str):
    """``@seeded("test name")``: Hypothesis draws from the session seed and ``name``."""
    return seed(seed_for("hypothesis", name))
