"""Model test vectors: the dumped records replay bit-exactly on a fresh core and cover every mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from deltamtl.contract.encoding import parse_header, trailer_status
from deltamtl.contract.formats import JobFlag, Mode
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.vectors import read_vectors
from deltamtl.host.model_vectors import main, model_vectors
from deltamtl.model.export.quantized_model import ReusePolicy
from deltamtl.model.quant.assemble import random_multitask
from deltamtl.model.quant.quantizer import Quantizer

from tests.helpers import seeding

torch.set_num_threads(1)


def test_model_vectors_replay_and_cover_modes(tmp_path: Path) -> None:
    seed = seeding.seed_for("test_model_vectors_replay_and_cover_modes", bits=20)
    q = Quantizer(random_multitask(seed))
    q.calibrate([torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed))])
    qm = q.to_quantized()
    qm.policy = ReusePolicy(depth=qm.depth, keyframe_interval=2, boundaries={"depth": 0, "edges": -1},
                            thresholds={t: [2] * qm.depth for t in qm.tasks})
    frames = np.random.default_rng(seed).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    limits, records, runner = model_vectors(qm, frames)
    assert records[0].is_reset and all(r.cls == "model" for r in records[1:])
    assert len(records) - 1 == len(runner.records)
    from deltamtl.contract.vectors import write_vectors

    write_vectors(tmp_path / "m.dmtv", records, limits)
    limits2, back = read_vectors(tmp_path / "m.dmtv")
    assert limits2 == limits and len(back) == len(records)
    core = GoldenCore(limits2)
    seen = set()
    for rec in back:
        if rec.is_reset:
            core.reset()
            continue
        np.testing.assert_array_equal(core.run_packet(rec.words_in), rec.words_out)
        hdr = parse_header(rec.words_in)
        seen.add((Mode(hdr["mode"]), bool(hdr["flags"] & JobFlag.LOAD_REF)))
        assert trailer_status(rec.words_out) == 0, "a model job was refused"
    assert {(Mode.DENSE, False), (Mode.TEMPORAL, True), (Mode.TASK, False)} <= seen


def test_cli_random_model(tmp_path: Path, capsys) -> None:
    assert main(["--random", "5", "--frames", "2", "--key-interval", "2", "--out", str(tmp_path / "r.dmtv")]) == 0
    assert "site jobs of 2 frames" in capsys.readouterr().out
    _, recs = read_vectors(tmp_path / "r.dmtv")
    assert len(recs) > 30
