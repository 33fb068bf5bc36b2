"""Host operations between linear sites, in float32 numpy: the ONE implementation every backend runs.

The integer contract covers the linear sites only (docs/architecture.md). Everything between
them -- image normalisation, patchify, position embedding, LayerNorm, the attention core
(q k^T, softmax, attn v), tanh-GELU, residual adds, the final norm and the dense heads --
runs here, on one image at a time (tokens [P, D], images [C, H, W]). The golden runner,
the emulated HLS backend and the board driver all call these functions, so the only
differences between backends are at the sites, where the contract makes them bit-exact.

The definitions follow :mod:`deltamtl.model.training.vit` op for op (tanh GELU, pre-norm blocks,
patches flattened (c, dy, dx), heads = Linear, unpatchify, concat normalised image, 3x3
convs with zero padding). Results agree with the torch float model to float32 rounding,
not bit for bit (summation order differs); tests bound the difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

F32 = np.float32
_GELU_C = F32(math.sqrt(2.0 / math.pi))


def as_f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=F32)


def normalize_image(rgb: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] (or float [3, H, W] in [0, 1]) -> normalised float32 [3, H, W]."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        if rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be [H, W, 3], got {rgb.shape}")
        img = rgb.transpose(2, 0, 1).astype(F32) / F32(255.0)
    else:
        if rgb.ndim != 3 or rgb.shape[0] != 3:
            raise ValueError(f"float images must be [3, H, W], got {rgb.shape}")
        img = as_f32(rgb)
    return (img - as_f32(mean).reshape(3, 1, 1)) / as_f32(std).reshape(3, 1, 1)


def patchify(img: np.ndarray, patch: int) -> np.ndarray:
    """[C, H, W] -> [(H/p)*(W/p), C*p*p], raster order, patch flattened (c, dy, dx)."""
    c, h, w = img.shape
    if h % patch or w % patch:
        raise ValueError(f"image {h}x{w} is not a multiple of patch {patch}")
    x = img.reshape(c, h // patch, patch, w // patch, patch).transpose(1, 3, 0, 2, 4)
    return np.ascontiguousarray(x.reshape((h // patch) * (w // patch), c * patch * patch))


def unpatchify(tokens: np.ndarray, patch: int, channels: int, height: int, width: int) -> np.ndarray:
    """[N, C*p*p] -> [C, H, W] (inverse of :func:`patchify`)."""
    gy, gx = height // patch, width // patch
    x = tokens.reshape(gy, gx, channels, patch, patch).transpose(2, 0, 3, 1, 4)
    return np.ascontiguousarray(x.reshape(channels, height, width))


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis with the biased variance (torch.nn.LayerNorm)."""
    x = as_f32(x)
    mu = x.mean(axis=-1, keepdims=True, dtype=F32)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True, dtype=F32)
    return xc / np.sqrt(var + F32(eps)) * as_f32(weight) + as_f32(bias)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    x = as_f32(x)
    return F32(0.5) * x * (F32(1.0) + np.tanh(_GELU_C * (x + F32(0.044715) * x * x * x)))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = as_f32(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True, dtype=F32)


def attention_core(qkv: np.ndarray, num_heads: int) -> np.ndarray:
    """qkv [P, 3D] laid out [q | k | v], heads contiguous -> softmax(q k^T / sqrt(d)) v, [P, D]."""
    p, three_d = qkv.shape
    d = three_d // 3
    hd = d // num_heads
    q, k, v = as_f32(qkv).reshape(p, 3, num_heads, hd).transpose(1, 2, 0, 3)  # each [H, P, hd]
    attn = softmax((q @ k.transpose(0, 2, 1)) * F32(hd**-0.5), axis=-1)
    return np.ascontiguousarray((attn @ v).transpose(1, 0, 2).reshape(p, d))


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Float linear for host-side layers (the head projection), never for sites."""
    y = as_f32(x) @ as_f32(weight).T
    return y if bias is None else y + as_f32(bias)


def conv2d_same(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """[C, H, W] * [O, C, k, k] with zero padding k//2 (stride 1) -> [O, H, W], by im2col."""
    c, h, w = x.shape
    o, ci, kh, kw = weight.shape
    if ci != c:
        raise ValueError(f"conv2d: input has {c} channels, weight expects {ci}")
    ph, pw = kh // 2, kw // 2
    xp = np.pad(as_f32(x), ((0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((c, kh, kw, h, w), dtype=F32)
    for dy in range(kh):
        for dx in range(kw):
            cols[:, dy, dx] = xp[:, dy : dy + h, dx : dx + w]
    y = as_f32(weight).reshape(o, -1) @ cols.reshape(c * kh * kw, h * w)
    return (y + as_f32(bias)[:, None]).reshape(o, h, w)


def dense_head(tokens: np.ndarray, x_norm: np.ndarray, params: Mapping[str, np.ndarray],
               prefix: str, patch: int, channels: int) -> np.ndarray:
    """:class:`deltamtl.model.training.vit.DenseHead` on one image: tokens [P, D] -> [out, H, W].

    ``params`` holds state-dict names: ``{prefix}proj.weight``, ``{prefix}refine.{i}.weight``
    (conv layers at even indices, GELU between) and ``{prefix}out.weight``.
    """
    h, w = x_norm.shape[-2:]
    feat = unpatchify(linear(tokens, params[f"{prefix}proj.weight"], params[f"{prefix}proj.bias"]),
                      patch, channels, h, w)
    x = np.concatenate([feat, as_f32(x_norm)], axis=0)
    i = 0
    while f"{prefix}refine.{i}.weight" in params:
        x = gelu_tanh(conv2d_same(x, params[f"{prefix}refine.{i}.weight"],
                                  params[f"{prefix}refine.{i}.bias"]))
        i += 2  # Sequential(conv, GELU, conv, GELU, ...)
    return conv2d_same(x, params[f"{prefix}out.weight"], params[f"{prefix}out.bias"])


# ---------------------------------------------------------------------------------------
# The per-site program of one task: what runs before each site (its input) and after it.
# ---------------------------------------------------------------------------------------
class TaskHostState:
    """One task's float state while a frame runs through the encoder, site by site.

    ``site_input(layer, site)`` returns the float input of that site; ``site_output``
    consumes its dequantised output. Sites must be visited in execution order:
    patch_embed (base only), then per block attn.qkv, attn.proj, mlp.fc1, mlp.fc2.
    """

    def __init__(self, params: Mapping[str, np.ndarray], mcfg: Mapping, x_norm: np.ndarray) -> None:
        self.p = params
        self.eps = float(mcfg["ln_eps"])
        self.num_heads = int(mcfg["num_heads"])
        self.patch = int(mcfg["patch_size"])
        self.head_channels = int(mcfg["head_channels"])
        self.x_norm = x_norm
        self.h: np.ndarray | None = None  # residual stream [P, D]
        self._pending: np.ndarray | None = None  # input of the next site inside a block

    def embed_input(self) -> np.ndarray:
        return patchify(self.x_norm, self.patch)

    def set_embedded(self, tokens: np.ndarray) -> None:
        """Patch-embedding output (dequantised) + position embedding -> residual stream."""
        pos = as_f32(self.p["encoder.pos_embed"]).reshape(tokens.shape)
        self.h = as_f32(tokens) + pos

    def site_input(self, layer: int, site: str) -> np.ndarray:
        blk = f"encoder.blocks.{layer}."
        if site == "attn.qkv":
            return layer_norm(self.h, self.p[blk + "norm1.weight"], self.p[blk + "norm1.bias"], self.eps)
        if site == "mlp.fc1":
            return layer_norm(self.h, self.p[blk + "norm2.weight"], self.p[blk + "norm2.bias"], self.eps)
        if site in ("attn.proj", "mlp.fc2"):
            if self._pending is None:
                raise RuntimeError(f"block {layer} {site}: visited before its predecessor site")
            x, self._pending = self._pending, None
            return x
        raise ValueError(f"unknown site {site!r}")

    def site_output(self, layer: int, site: str, y: np.ndarray) -> None:
        y = as_f32(y)
        if site == "attn.qkv":
            self._pending = attention_core(y, self.num_heads)
        elif site == "mlp.fc1":
            self._pending = gelu_tanh(y)
        elif site in ("attn.proj", "mlp.fc2"):
            self.h = self.h + y
        else:
            raise ValueError(f"unknown site {site!r}")

    def finish(self, task: str) -> np.ndarray:
        """Final LayerNorm and the task head -> the task's output map [C, H, W]."""
        tokens = layer_norm(self.h, self.p["encoder.norm.weight"], self.p["encoder.norm.bias"], self.eps)
        return dense_head(tokens, self.x_norm, self.p, f"heads.{task}.", self.patch, self.head_channels)
