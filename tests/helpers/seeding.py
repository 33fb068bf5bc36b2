"""One random seed per test session: fresh inputs every run, replayable.

A failing test prints ``DELTAMTL_TEST_SEED=<n>`` (the autouse fixture in conftest.py);
``DELTAMTL_TEST_SEED=<n> make test`` replays that run's inputs.

Every random draw in the tests comes from SEED:
- explicit generators: ``rng("name")`` (numpy), ``torch_gen("name")`` or ``seed_for("name")``
  for an integer seed handed to the code under test; the salt keeps tests independent of
  each other, so a replay does not depend on which tests ran before;
- global generators (``torch.rand`` without a generator, ``np.random.*``, ``random.*``):
  conftest.py seeds them before every test from SEED and the test's node id.
"""

from __future__ import annotations

import os
import secrets
import zlib

import numpy as np

_ENV = "DELTAMTL_TEST_SEED"


def _session_seed() -> int:
    text = os.environ.get(_ENV, "").strip()
    if not text:
        return secrets.randbelow(1 << 30)
    try:
        return int(text, 0)
    except ValueError as exc:  # a typo must not silently become a fresh random run
        raise ValueError(f"{_ENV}={text!r} is not an integer") from exc


SEED: int = _session_seed()


def _salt_words(salt: tuple[object, ...]) -> list[int]:
    # strings hash with crc32 (stable across processes, unlike hash()); ints pass through
    return [s if isinstance(s, int) else zlib.crc32(str(s).encode()) for s in salt]


def rng(*salt: object) -> np.random.Generator:
    """A numpy generator drawn from the session seed and ``salt`` (test name, case, ...)."""
    return np.random.default_rng([SEED, *_salt_words(salt)])


def seed_for(*salt: object, bits: int = 31) -> int:
    """An integer seed below ``2**bits`` derived from the session seed and ``salt``."""
    return int(rng("seed_for", *salt).integers(1 << bits))


def torch_gen(*salt: object):  # -> torch.Generator (torch imported lazily: contract tests skip it)
    """A torch generator seeded from the session seed and ``salt``."""
    import torch

    return torch.Generator().manual_seed(seed_for("torch", *salt, bits=62))
