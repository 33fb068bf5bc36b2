"""Golden model: host ops against the torch model, site jobs and whole videos bit-exact
against the PyTorch fake-quant (integer-mode) model, job order and accounting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from deltamtl.contract.formats import JobFlag, Mode, quantize_activation
from deltamtl.contract.golden_core import GoldenCore, execute_job
from deltamtl.contract.jobs import CoreState, SiteJob
from deltamtl.host import float_ops as host_ops
from deltamtl.host.runner import GoldenRunner, PacketExecutor, SiteExecutor
from deltamtl.host.verify import bitexact_clip
from deltamtl.model.export.quantized_model import QuantizedModel, ReusePolicy
from deltamtl.model.quant.assemble import random_multitask
from deltamtl.model.quant.quantizer import Quantizer
from deltamtl.model.tasks import BLOCK_SITES, site_order
from deltamtl.model.training.vit import gelu_tanh_reference, patchify

from tests.helpers.seeding import SEED

pytestmark = pytest.mark.quant  # make test-quant

torch.set_num_threads(1)


def quantised_system(seed: int, policy: ReusePolicy | None = None) -> tuple[Quantizer, QuantizedModel]:
    mt = random_multitask(seed)
    q = Quantizer(mt)
    gen = torch.Generator().manual_seed(seed)
    q.calibrate([torch.rand(4, 3, 16, 16, generator=gen) for _ in range(2)])
    qm = q.to_quantized()
    if policy is not None:
        qm.policy = policy
    q.bind(qm)
    q.set_mode("int")
    return q, qm


def torch_traces(q: Quantizer, frames: np.ndarray) -> list[dict]:
    """Per frame {(task, site name): (x int8, y int8)} of the fake-quant model."""
    out = []
    with torch.no_grad():
        for f in frames:
            img = torch.from_numpy(f.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0))
            with q.recording() as log:
                q.mt(img[None])
            out.append({(t, n): (x[0], y[0]) for t, n, x, y in log})
    return out


# ---------------------------------------------------------------------------------------
# host ops == the torch definitions (to float32 rounding)
# ---------------------------------------------------------------------------------------
def test_host_ops_match_torch() -> None:
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(16, 24)).astype(np.float32) * 3
    w, b = rng.normal(size=24).astype(np.float32), rng.normal(size=24).astype(np.float32)
    ref = F.layer_norm(torch.from_numpy(x), (24,), torch.from_numpy(w), torch.from_numpy(b), 1e-6)
    np.testing.assert_allclose(host_ops.layer_norm(x, w, b, 1e-6), ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(host_ops.gelu_tanh(x), gelu_tanh_reference(torch.from_numpy(x)).numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host_ops.gelu_tanh(x), F.gelu(torch.from_numpy(x), approximate="tanh").numpy(),
                               rtol=1e-5, atol=1e-6)
    img = rng.random((3, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(host_ops.patchify(img, 4), patchify(torch.from_numpy(img)[None], 4)[0].numpy())
    np.testing.assert_array_equal(host_ops.unpatchify(host_ops.patchify(img, 4), 4, 3, 16, 16), img)
    cw, cb = rng.normal(size=(5, 3, 3, 3)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    ref_c = F.conv2d(torch.from_numpy(img)[None], torch.from_numpy(cw), torch.from_numpy(cb), padding=1)[0]
    np.testing.assert_allclose(host_ops.conv2d_same(img, cw, cb), ref_c.numpy(), rtol=1e-4, atol=1e-4)


def test_host_attention_matches_torch_module() -> None:
    from deltamtl.model.training.vit import Attention

    torch.manual_seed(SEED % 1000)
    att = Attention(24, 2, True).eval()
    x = torch.randn(1, 16, 24)
    with torch.no_grad():
        ref = att(x)[0].numpy()
        qkv = att.qkv(x)[0].numpy()
        mine = host_ops.linear(host_ops.attention_core(qkv, 2), att.proj.weight.numpy(), att.proj.bias.numpy())
    np.testing.assert_allclose(mine, ref, rtol=1e-4, atol=1e-5)


def test_float_task_forward_through_host_ops_matches_torch() -> None:
    """Host ops + float sites reproduce every task's torch output (the code the runner uses)."""
    q, qm = quantised_system(SEED)
    q.set_mode("float")
    img = np.random.default_rng(SEED).random((3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = q.mt(torch.from_numpy(img)[None])
    for task in qm.tasks:
        model = q.mt.model_of(task)
        st = host_ops.TaskHostState(qm.host[task], qm.mcfg, host_ops.normalize_image(img, *[
            qm.host[task][k] for k in ("pixel_mean", "pixel_std")]))
        pe = model.encoder.patch_embed.inner
        st.set_embedded(host_ops.linear(st.embed_input(), pe.weight.detach().numpy(), pe.bias.detach().numpy()))
        for layer in range(qm.depth):
            for site in BLOCK_SITES:
                mod = dict(model.encoder.blocks[layer].named_modules())[site].inner
                w = (mod.task_weight() if hasattr(mod, "task_weight") else mod.weight).detach().numpy()
                b = (mod.task_bias() if hasattr(mod, "task_bias") else mod.bias).detach().numpy()
                st.site_output(layer, site, host_ops.linear(st.site_input(layer, site), w, b))
        np.testing.assert_allclose(st.finish(task), ref[task][0].numpy(), rtol=1e-3, atol=1e-3)


# ---------------------------------------------------------------------------------------
# >= 1,000 random site jobs, every mode, bit-exact against the fake-quant model
# ---------------------------------------------------------------------------------------
def _torch_int_site(q: Quantizer, task: str, layer: int, site: str, x: np.ndarray, s_x: float) -> np.ndarray:
    qs = q.groups[(layer, site)].members[task]
    with torch.no_grad(), q.recording() as log:
        qs(torch.from_numpy(x.astype(np.float32) * np.float32(s_x)))
    return log[-1][3]


def test_random_site_jobs_bit_exact_all_modes() -> None:
    rng = np.random.default_rng(SEED)
    n_jobs = 0
    for m in range(12):
        q, qm = quantised_system(SEED + m)
        limits = qm.core_limits()
        for layer, site in site_order(qm.depth):
            sp = qm.site(layer, site)
            p = qm.tokens
            state = CoreState()
            tasks = qm.tasks if layer >= 0 else qm.tasks[:1]

            def run(job: SiteJob, st: CoreState = state, limits=limits) -> np.ndarray:
                res = execute_job(job, st, limits)
                assert res.status == 0, res.status
                return res.y

            def rand_x(shape: tuple[int, int] = (p, sp.in_dim)) -> np.ndarray:
                return rng.integers(-128, 128, shape, dtype=np.int64).astype(np.int8)

            base = qm.base
            x0, x1 = rand_x(), rand_x()
            # base DENSE, then base TEMPORAL (th = 1: lossless) on a new input
            y = run(SiteJob(Mode.DENSE, JobFlag.LOAD_W, 1, x0, sp.req_mult[base], sp.req_shift[base],
                            sp.out_dim, w=sp.w, bias=sp.bias))
            np.testing.assert_array_equal(y, _torch_int_site(q, base, layer, site, x0, sp.s_x))
            y = run(SiteJob(Mode.TEMPORAL, JobFlag.NONE, 1, x1, sp.req_mult[base], sp.req_shift[base],
                            sp.out_dim))
            np.testing.assert_array_equal(y, _torch_int_site(q, base, layer, site, x1, sp.s_x))
            n_jobs += 2
            for task in tasks[1:]:
                # TASK on the resident base state (input near the base's: a sparse delta)
                xk = np.clip(x1.astype(np.int16) + rng.integers(-3, 4, x1.shape) * (rng.random(x1.shape) < 0.3),
                             -128, 127).astype(np.int8)
                job = SiteJob(Mode.TASK, JobFlag.NONE, 1, xk, sp.req_mult[task], sp.req_shift[task],
                              sp.out_dim, dw=sp.dw[task], bias=sp.db[task])
                np.testing.assert_array_equal(run(job), _torch_int_site(q, task, layer, site, xk, sp.s_x))
                # sub-task DENSE (W_b + dW, full bias) and TEMPORAL on its own references
                own = CoreState(w=sp.w.copy())
                xa, xb = rand_x(), rand_x()
                ya = run(SiteJob(Mode.DENSE, JobFlag.NONE, 1, xa, sp.req_mult[task], sp.req_shift[task],
                                 sp.out_dim, dw=sp.dw[task], bias=sp.task_bias(task)), own)
                np.testing.assert_array_equal(ya, _torch_int_site(q, task, layer, site, xa, sp.s_x))
                yb = run(SiteJob(Mode.TEMPORAL, JobFlag.LOAD_REF, 1, xb, sp.req_mult[task], sp.req_shift[task],
                                 sp.out_dim, dw=sp.dw[task], x_ref=own.x_ref.copy(), y_ref=own.y_ref.copy()),
                         CoreState(w=sp.w.copy()))
                np.testing.assert_array_equal(yb, _torch_int_site(q, task, layer, site, xb, sp.s_x))
                n_jobs += 3
    assert n_jobs >= 1000, n_jobs


# ---------------------------------------------------------------------------------------
# whole videos
# ---------------------------------------------------------------------------------------
def _frames(seed: int, n: int) -> np.ndarray:
    """A smooth random video (uint8 [T, 16, 16, 3]): small per-frame changes."""
    rng = np.random.default_rng(seed)
    base = rng.random((16, 16, 3)) * 255
    drift = rng.normal(size=(n, 16, 16, 3)).cumsum(axis=0) * 4
    return np.clip(base + drift, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("task_reuse", [True, False])
def test_clip_bit_exact_against_fake_quant_model(task_reuse: bool) -> None:
    """Every site of every task and frame: golden(torch's int8 input) == torch's int8 output.

    th = 1 (lossless) in every mode, with keyframes every 3 frames and sub-task boundaries
    so that DENSE, TEMPORAL and TASK (with and without own references) all run."""
    policy = ReusePolicy(depth=2, keyframe_interval=3, key_offset=1, task_reuse=task_reuse,
                         boundaries={"depth": -1, "normals": 0, "edges": 1})
    q, qm = quantised_system(SEED, policy)
    frames = _frames(SEED, 7)
    res = bitexact_clip(q, qm, frames)
    assert res["mismatches"] == 0, res["first_mismatches"]
    assert res["modes"] == (["DENSE", "TASK", "TEMPORAL"] if task_reuse else ["DENSE", "TEMPORAL"])
    assert res["site_outputs_compared"] == len(frames) * (1 + 4 * qm.depth * len(qm.tasks))


def test_site_comparison_detects_a_wrong_integer_model() -> None:
    """The comparison is not vacuous: one changed requantiser multiplier is caught, at that
    site only (every other site gets the torch model's inputs and stays exact)."""
    import copy

    q, qm = quantised_system(SEED)
    bad = copy.deepcopy(qm)
    sp = bad.site(1, "mlp.fc1")
    sp.req_mult["normals"] = (sp.req_mult["normals"].astype(np.int64) * 3 // 4).astype(np.uint16)
    frames = _frames(SEED, 2)
    traces = torch_traces(q, frames)
    golden = GoldenRunner(bad, trace=True)
    for i, f in enumerate(frames):
        golden.run_frame(f, override=lambda t, n, tr=traces[i]: tr[(t, n)][0])
    diff = {k for i in range(2) for k, (_x, y) in traces[i].items()
            if not np.array_equal(golden.trace[i][k][1], y)}
    assert diff == {("normals", "blocks.1.mlp.fc1")}


def test_runner_job_order_flags_and_bytes() -> None:
    policy = ReusePolicy(depth=2, keyframe_interval=2, boundaries={"depth": 0, "normals": 1, "edges": -1})
    _, qm = quantised_system(SEED, policy)
    runner = GoldenRunner(qm)
    runner.run_clip(_frames(SEED, 3))
    for frame in range(3):
        recs = [r for r in runner.records if r.frame == frame]
        key = frame % 2 == 0
        for layer, site in site_order(qm.depth):
            group = [r for r in recs if (r.layer, r.site) == (layer, site)]
            assert group[0].task == qm.base and group[0].flags & JobFlag.LOAD_W
            assert group[0].mode == (Mode.DENSE if key else Mode.TEMPORAL)
            tasks_seen = [r.task for r in group]
            assert sorted(tasks_seen) == sorted(qm.tasks if layer >= 0 else qm.tasks[:1])
            seen_own = False
            for r in group[1:]:
                above = layer > policy.boundary(r.task)
                if r.mode == Mode.TASK:
                    assert not seen_own, "TASK job after a job that replaced the resident references"
                    assert not r.flags & (JobFlag.LOAD_W | JobFlag.LOAD_REF)
                    assert r.bytes_read < group[0].bytes_read  # no W_b, no references
                    assert bool(r.flags & JobFlag.EMIT_REF) == (key and above)
                else:
                    seen_own = True
                    assert r.mode == Mode.TEMPORAL and not key and above
                    assert r.flags & JobFlag.LOAD_REF
    sv = runner.resident_savings()
    n_task = sum(r.mode == Mode.TASK for r in runner.records)
    assert n_task > 0 and sv["references"] > 0 and sv["weights"] > 0
    assert sv["bytes_read_without_residency"] == sv["bytes_read"] + sv["weights"] + sv["references"]
    tot = runner.totals()
    assert set(tot) == set(qm.tasks) and all(v["macs"] > 0 and v["bytes_read"] > 0 for v in tot.values())


def test_thresholds_cut_macs_and_keep_outputs_close() -> None:
    _, qm = quantised_system(SEED)
    frames = _frames(SEED + 1, 5)
    exact = GoldenRunner(qm)
    out_exact = exact.run_clip(frames)
    qm.policy = ReusePolicy(depth=qm.depth, keyframe_interval=5,
                            thresholds={t: [3] * qm.depth for t in qm.tasks})  # th below
    lossy = GoldenRunner(qm)
    out_lossy = lossy.run_clip(frames)
    macs_exact = sum(v["macs"] for v in exact.totals().values())
    macs_lossy = sum(v["macs"] for v in lossy.totals().values())
    assert macs_lossy < macs_exact
    # th = 3 leaves each site input at most th - 1 = 2 LSB from the exact one, 2/127 of the
    # int8 range; summed linearly over the 4 sites of every block that is 4 depth (th-1)/127
    # of the output's scale (12.6 % at depth 2; measured below 3 % over a dozen seeds)
    th = 3
    bound = len(BLOCK_SITES) * qm.depth * (th - 1) / 127
    for a, b in zip(out_exact[1:], out_lossy[1:], strict=True):
        for t in a:
            scale = np.abs(a[t]).max() + 1e-6
            assert np.abs(a[t] - b[t]).max() < bound * scale, (t, bound)


def test_executors_are_interchangeable() -> None:
    _, qm = quantised_system(SEED)
    frames = _frames(SEED + 2, 4)
    core = GoldenCore(qm.core_limits())
    assert isinstance(core, SiteExecutor)
    packet = PacketExecutor(GoldenCore(qm.core_limits()))
    assert isinstance(packet, SiteExecutor)
    a = GoldenRunner(qm, core).run_clip(frames)
    b = GoldenRunner(qm, packet).run_clip(frames)
    assert packet.words_in > 0
    for fa, fb in zip(a, b, strict=True):
        for t in fa:
            np.testing.assert_array_equal(fa[t], fb[t])


def test_override_and_quantize_agree_on_own_inputs() -> None:
    """Without an override the runner quantises its own host values with the contract rule."""
    _, qm = quantised_system(SEED)
    runner = GoldenRunner(qm, trace=True)
    frame = _frames(SEED, 1)[0]
    runner.run_frame(frame)
    x_norm = host_ops.normalize_image(frame, qm.host["semseg"]["pixel_mean"], qm.host["semseg"]["pixel_std"])
    x = quantize_activation(host_ops.patchify(x_norm, 4), qm.site(-1, "patch_embed").s_x)
    np.testing.assert_array_equal(runner.trace[0][("semseg", "patch_embed")][0], x)


def test_runner_refuses_bad_tasks_and_policy() -> None:
    _, qm = quantised_system(SEED)
    with pytest.raises(KeyError, match="segmentation"):
        GoldenRunner(qm, tasks=["segmentation"])
    with pytest.raises(ValueError, match="key_offset"):
        ReusePolicy(depth=2, keyframe_interval=3, key_offset=3)
    with pytest.raises(ValueError, match="thresholds"):
        ReusePolicy(depth=2, thresholds={"depth": [0, 1]})
