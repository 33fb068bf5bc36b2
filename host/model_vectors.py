"""Test vectors from the trained model: every site job of a few frames, as .dmtv records.

The whole-video golden runner (:class:`deltamtl.host.runner.GoldenRunner`) runs the
quantised model of an export bundle on a synthetic test clip; every job it issues is packed
into the core's input packet and answered by the packet-level golden core, and the pair is
written as a record of class ``model`` (format: :mod:`deltamtl.contract.vectors`). Records run
in order on one core: TASK jobs use the weights and base references left resident by the
job before them, exactly as the runner issued them. The file starts with a reset record.

    deltamtl model-vectors --bundle runs/quant/bundle --frames 3 \\
        --out build/vectors/model.dmtv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from deltamtl.contract.encoding import pack_job, unpack_result
from deltamtl.contract.golden_core import GoldenCore
from deltamtl.contract.jobs import JobResult, SiteJob
from deltamtl.contract.limits import TINY_LIMITS, CoreLimits
from deltamtl.contract.vectors import Record, write_vectors
from deltamtl.host.runner import GoldenRunner
from deltamtl.model.export.quantized_model import QuantizedModel


class RecordingExecutor:
    """Packet-level golden core that keeps every (input packet, output packet) as a Record."""

    def __init__(self, limits: CoreLimits) -> None:
        self.core = GoldenCore(limits)
        self.beat_words = limits.beat_words
        self.records: list[Record] = []

    def reset(self) -> None:
        self.core.reset()
        self.records.append(Record("reset", np.zeros(0, np.uint64), np.zeros(0, np.uint64)))

    def run_job(self, job: SiteJob) -> JobResult:
        words = pack_job(job, self.beat_words)
        out = self.core.run_packet(words)
        self.records.append(Record("model", words, out))
        return unpack_result(out, job, self.beat_words)


def fits(qm: QuantizedModel, limits: CoreLimits) -> bool:
    need = qm.core_limits(limits.lanes)
    keys = ("max_tokens", "max_in", "max_out", "max_nnz_dw", "max_weights")
    return all(getattr(need, k) <= getattr(limits, k) for k in keys)


def model_vectors(qm: QuantizedModel, frames: np.ndarray, limits: CoreLimits | None = None
                  ) -> tuple[CoreLimits, list[Record], GoldenRunner]:
    """Records of every site job of ``frames`` (uint8 [T, H, W, 3]) through the runner."""
    if limits is None:
        limits = TINY_LIMITS if fits(qm, TINY_LIMITS) else qm.core_limits()
    elif not fits(qm, limits):
        raise ValueError(f"model needs {qm.core_limits(limits.lanes)}, above the limits {limits}")
    ex = RecordingExecutor(limits)
    runner = GoldenRunner(qm, ex)  # the constructor resets: the first record is a reset
    for f in frames:
        runner.run_frame(f)
    return limits, ex.records, runner


def clip_frames(qm: QuantizedModel, n_frames: int, clip: int = 0, seed: int = 0) -> np.ndarray:
    """The first frames of a synthetic test clip at the model's resolution."""
    from deltamtl.model.data.datasets import synthetic_clips

    size = int(qm.mcfg["img_size"])
    return synthetic_clips("test", clip + 1, n_frames, size, size, seed=seed)[clip].rgb[:n_frames]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="deltamtl model-vectors",
                                description="dump every site job of a few frames of a model (.dmtv)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", type=Path, help="export bundle of the trained model")
    src.add_argument("--random", type=int, metavar="SEED", help="a small random model instead")
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--clip", type=int, default=0, help="synthetic test clip index")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--key-interval", type=int, default=None,
                   help="override the bundle's keyframe interval K (e.g. 2: temporal jobs early)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.bundle is not None:
        from deltamtl.model.export.bundle import BundleError, load_bundle

        try:
            qm = load_bundle(a.bundle)
        except BundleError as exc:
            print(f"vectors_model: {exc}", file=sys.stderr)
            return 1
    else:
        import torch
        from deltamtl.model.quant.assemble import random_multitask
        from deltamtl.model.quant.quantizer import Quantizer

        torch.set_num_threads(1)
        q = Quantizer(random_multitask(a.random))
        q.calibrate([torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(a.random))])
        qm = q.to_quantized()
    if a.key_interval is not None:
        from dataclasses import replace

        qm.policy = replace(qm.policy, keyframe_interval=a.key_interval, key_offset=0)
    frames = clip_frames(qm, a.frames, a.clip, a.data_seed)
    limits, records, runner = model_vectors(qm, frames)
    write_vectors(a.out, records, limits)
    modes: dict[str, int] = {}
    for r in runner.records:
        modes[r.mode.name] = modes.get(r.mode.name, 0) + 1
    print(f"wrote {a.out}: {len(records)} records ({len(records) - 1} site jobs of {len(frames)} frames, "
          f"{len(qm.tasks)} tasks; modes {modes}); limits {limits}")
    return 0

