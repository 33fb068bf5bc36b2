"""Fixtures of the export-bundle tests: one tiny random quantised model and one valid
bundle per session (tests/model/test_export_*.py copy it before corrupting it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.seeding import seed_for


@pytest.fixture(scope="session")
def tiny_qm():
    import torch
    from deltamtl.model.quant.assemble import random_multitask
    from deltamtl.model.quant.quantizer import Quantizer

    q = Quantizer(random_multitask(seed_for("tiny_qm")))
    q.calibrate([torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed_for("calib")))])
    return q.to_quantized()


@pytest.fixture(scope="session")
def valid_bundle(tiny_qm, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid bundle, written once per session: copy it (bundle_helpers.copy_bundle),
    never edit it."""
    from deltamtl.model.export.bundle import write_bundle

    return write_bundle(tiny_qm, tmp_path_factory.mktemp("valid") / "bundle")



@pytest.fixture(scope="session")
def valid_manifest_blob(valid_bundle: Path) -> bytes:
    """The valid bundle's manifest, pickled: ``pickle.loads`` gives a fresh dict (fast)."""
    import pickle

    from tests.model.bundle_helpers import manifest

    return pickle.dumps(manifest(valid_bundle))


@pytest.fixture(scope="session")
def mini_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid bundle of a depth-1, two-task model (few files: fast to copy and load)."""
    import torch
    from deltamtl.model.export.bundle import write_bundle
    from deltamtl.model.quant.assemble import SMALL_MODEL, random_multitask
    from deltamtl.model.quant.quantizer import Quantizer

    mt = random_multitask(seed_for("mini_qm"), mcfg=dict(SMALL_MODEL, depth=1), subtasks=("depth",))
    q = Quantizer(mt)
    q.calibrate([torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed_for("mini")))])
    return write_bundle(q.to_quantized(), tmp_path_factory.mktemp("mini") / "bundle")
