"""DDP under torchrun (gloo, 2 CPU processes): identical parameters on both ranks, and the
same update as one process with the same global batch.

Run as a script (by torchrun) this file is the worker: it trains, then saves its own
rank's parameters so the test can compare ranks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SMALL = [
    "model.img_size=32", "model.patch_size=8", "model.embed_dim=32", "model.depth=1", "model.num_heads=2",
    "model.head_channels=8", "data.train_clips=2", "data.val_clips=1", "data.frames_per_clip=4",
    "train.batch_size=4", "train.warmup_steps=1", "train.steps=2", "train.eval_every=1000",
    "train.ckpt_every=1000", "train.log_every=1", "train.threads=2", "eval.batch_size=8",
    "train.hflip=false",  # random flips differ per rank, so the single-process comparison needs none
]


def _worker(out: str) -> None:
    import torch.distributed as dist
    from deltamtl.model.config import load_config
    from deltamtl.model.training.train import train

    cfg = load_config("configs/tiny.yaml", SMALL)
    result = train(cfg, "st", out, task="semseg", progress=False)
    assert result["step"] == 2
    rank = dist.get_rank()  # each rank saves its own live parameters
    state = {k: v.detach().clone() for k, v in result["model"].state_dict().items()}
    torch.save({"rank": rank, "world": dist.get_world_size(), "model": state}, Path(out) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_torchrun_two_ranks_agree(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [torchrun, "--nproc_per_node=2", "--master_port=0", "--standalone", __file__, str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parents[2])
    assert res.returncode == 0, res.stdout + res.stderr
    _rank_params_equal(out)
    ckpt = torch.load(out / "last.pt", weights_only=False)
    assert len(ckpt["rng"]) == 2 and ckpt["step"] == 2
    # Same global batch (4) in one process: DDP averages gradients over ranks, CE is a mean,
    # so the update must agree up to float summation order.
    from deltamtl.model.config import load_config
    from deltamtl.model.training.train import train

    single = tmp_path / "single"
    train(load_config("configs/tiny.yaml", SMALL), "st", single, task="semseg", progress=False)
    one = torch.load(single / "last.pt", weights_only=False)["model"]
    for key, value in ckpt["model"].items():
        torch.testing.assert_close(one[key], value, rtol=1e-4, atol=1e-5, msg=key)


def _rank_params_equal(out: Path) -> None:
    r0 = torch.load(out / "rank0.pt", weights_only=False)
    r1 = torch.load(out / "rank1.pt", weights_only=False)
    assert (r0["world"], r0["rank"], r1["rank"]) == (2, 0, 1)
    for key, value in r0["model"].items():
        assert torch.equal(r1["model"][key], value), key


if __name__ == "__main__":
    _worker(sys.argv[1])
