"""MultiTaskViT: shapes, site naming, patch order, GELU choice, module swapping."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from deltamtl.model.config import load_config
from deltamtl.model.training.vit import (
    SITE_NAMES,
    MultiTaskViT,
    count_macs_per_image,
    gelu_tanh_reference,
    linear_sites,
    patchify,
    unpatchify,
)
from torch import nn

ALL_TASKS = ("semseg", "depth", "normals", "edges")
N_CLASSES = 7


@pytest.fixture(scope="module")
def cfg() -> dict:
    # A smaller variant of the tiny config keeps the tests quick.
    return load_config("configs/tiny.yaml", ["model.depth=2", f"model.num_classes={N_CLASSES}"])


@pytest.fixture(scope="module")
def model(cfg) -> MultiTaskViT:
    torch.manual_seed(0)
    return MultiTaskViT(cfg, ALL_TASKS).eval()


def test_output_shapes_per_task(model, cfg):
    size = cfg["model"]["img_size"]
    x = torch.rand(2, 3, size, size)
    out = model(x)
    assert set(out) == set(ALL_TASKS)
    assert out["semseg"].shape == (2, N_CLASSES, size, size)
    assert out["depth"].shape == (2, 1, size, size)
    assert out["normals"].shape == (2, 3, size, size)
    assert out["edges"].shape == (2, 1, size, size)
    only = model(x, "depth")
    assert set(only) == {"depth"}
    torch.testing.assert_close(only["depth"], out["depth"])
    with pytest.raises(KeyError, match="no head for task 'bogus'"):
        model(x, "bogus")
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        model(torch.rand(2, 1, size, size))


def test_linear_sites_are_named_linears(model, cfg):
    sites = linear_sites(model)
    depth = cfg["model"]["depth"]
    expected = ["encoder.patch_embed"] + [f"encoder.blocks.{b}.{s}" for b in range(depth) for s in SITE_NAMES]
    assert list(sites) == expected
    assert all(type(m) is nn.Linear for m in sites.values())
    d, p = cfg["model"]["embed_dim"], cfg["model"]["patch_size"]
    assert sites["encoder.patch_embed"].weight.shape == (d, 3 * p * p)
    assert sites["encoder.blocks.0.attn.qkv"].weight.shape == (3 * d, d)
    hidden = int(round(d * cfg["model"]["mlp_ratio"]))
    assert sites["encoder.blocks.1.mlp.fc2"].weight.shape == (d, hidden)
    for b in model.encoder.blocks:
        assert isinstance(b.norm1, nn.LayerNorm) and isinstance(b.norm2, nn.LayerNorm)
    assert model.encoder.pos_embed.shape == (1, (cfg["model"]["img_size"] // p) ** 2, d)


def test_patch_embed_equals_strided_conv(model, cfg):
    """Patch flattening is (c, dy, dx): the Linear is a Conv2d(k=p, stride=p) in disguise."""
    p = cfg["model"]["patch_size"]
    x = torch.randn(3, 3, cfg["model"]["img_size"], cfg["model"]["img_size"])
    lin = model.encoder.patch_embed
    conv = nn.Conv2d(3, lin.out_features, p, stride=p)
    with torch.no_grad():
        conv.weight.copy_(lin.weight.reshape(lin.out_features, 3, p, p))
        conv.bias.copy_(lin.bias)
        ref = conv(x).flatten(2).transpose(1, 2)  # raster order of patches
        got = lin(patchify(x, p))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unpatchify(patchify(x, p), p, 3, x.shape[2], x.shape[3]), x)


def test_gelu_is_tanh_approximation(model):
    x = torch.randn(1000) * 4
    act = model.encoder.blocks[0].mlp.act
    x64 = x.double().numpy()
    numpy_gelu = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3)))
    torch.testing.assert_close(act(x), gelu_tanh_reference(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(act(x).numpy(), numpy_gelu, rtol=1e-5, atol=1e-6)
    exact = torch.nn.functional.gelu(x)
    assert (act(x) - exact).abs().max() > 1e-5  # really the tanh form, not erf


def test_attention_core_matches_sdpa(model, cfg):
    attn = model.encoder.blocks[0].attn
    n, d = (cfg["model"]["img_size"] // cfg["model"]["patch_size"]) ** 2, cfg["model"]["embed_dim"]
    x = torch.randn(2, n, d)
    with torch.no_grad():
        qkv = attn.qkv(x).reshape(2, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        ref = torch.nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        ref = attn.proj(ref.transpose(1, 2).reshape(2, n, d))
        got = attn(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


class _Scaled(nn.Module):
    """A wrapper like the fake-quant / delta wrappers: calls the inner Linear."""

    def __init__(self, inner: nn.Linear, factor: float) -> None:
        super().__init__()
        self.inner, self.factor, self.calls = inner, factor, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x) * self.factor


def test_module_swapping_takes_effect(model, cfg):
    swapped = copy.deepcopy(model)
    x = torch.rand(2, 3, cfg["model"]["img_size"], cfg["model"]["img_size"])
    ref = model(x, "semseg")["semseg"]
    wrappers = []
    for block in swapped.encoder.blocks:
        for site in ("qkv", "proj"):
            w = _Scaled(getattr(block.attn, site), 1.0)
            setattr(block.attn, site, w)
            wrappers.append(w)
        for site in ("fc1", "fc2"):
            w = _Scaled(getattr(block.mlp, site), 1.0)
            setattr(block.mlp, site, w)
            wrappers.append(w)
    w = _Scaled(swapped.encoder.patch_embed, 1.0)
    swapped.encoder.patch_embed = w
    wrappers.append(w)
    torch.testing.assert_close(swapped(x, "semseg")["semseg"], ref)
    assert all(w.calls == 1 for w in wrappers)
    swapped.encoder.blocks[-1].mlp.fc2.factor = 0.5
    assert not torch.allclose(swapped(x, "semseg")["semseg"], ref)


def test_normalisation_inside_model(model, cfg):
    state = model.state_dict()
    assert "pixel_mean" in state and "pixel_std" in state
    x = torch.rand(1, 3, cfg["model"]["img_size"], cfg["model"]["img_size"])
    mean = torch.tensor(cfg["model"]["pixel_mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["model"]["pixel_std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(model.normalize(x), (x - mean) / std)


def test_single_task_model_and_seeded_init(cfg):
    torch.manual_seed(3)
    a = MultiTaskViT(cfg, ("edges",))
    torch.manual_seed(3)
    b = MultiTaskViT(cfg, ("edges",))
    assert list(a.heads) == ["edges"]
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert na == nb and torch.equal(pa, pb)
    with pytest.raises(ValueError, match="unknown task"):
        MultiTaskViT(cfg, ("semseg", "optical_flow"))


def test_mac_count_matches_module_shapes(cfg):
    macs = count_macs_per_image(cfg)
    m = cfg["model"]
    n = (m["img_size"] // m["patch_size"]) ** 2
    model = MultiTaskViT(cfg, ("semseg",))
    per_token = sum(lin.in_features * lin.out_features for name, lin in linear_sites(model).items()
                    if name != "encoder.patch_embed")
    assert macs["blocks_linear"] == n * per_token
    assert macs["tokens"] == n
