"""Multi-task Vision Transformer for dense prediction (semseg, depth, normals, edges).

Design choices that other parts of the project rely on:

* **Linear sites.** Every matrix product the accelerator runs is a plain ``nn.Linear``:
  ``encoder.patch_embed`` (over flattened patches) and, in each block,
  ``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``.  :func:`linear_sites` lists them
  by qualified name.  Wrappers (delta weights, fake-quant, threshold reuse) replace them by
  module swapping; ``forward`` never bypasses a module call, so swaps take effect.
* **Patch order.** A patch is flattened channel-major, ``(c, dy, dx)``, the order of a
  ``Conv2d(3, D, p, stride=p)`` weight reshaped to ``[D, 3*p*p]``.  Tokens are raster order.
* **No cls token.** Dense tasks only; the token grid is exactly the patch grid.
* **GELU is the tanh approximation** everywhere (blocks and heads):
  ``0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x**3)))`` — easy to re-implement in numpy and in
  the PL without erf.
* **Attention core** is written out (``softmax(q k^T / sqrt(d)) v``) rather than fused, so
  a numpy host implementation can match it op for op.
* **Pre-norm blocks** with separate ``norm1``/``norm2`` LayerNorm submodules (eps from the
  config) so a sub-task can own its LayerNorms while sharing the linear sites' base weights.
* **Image normalisation inside the model**: ``forward`` takes float images in [0, 1];
  ``(x - pixel_mean) / pixel_std`` uses buffers stored in the state dict.
* **Heads** (:class:`DenseHead`) use only Linear, unpatchify, concatenation with the
  normalised image, 3x3 conv (zero padding 1) and GELU.
* **Output units.** semseg: logits [B,C,H,W]; depth: **metres** [B,1,H,W]; normals: raw
  3-vectors [B,3,H,W] (normalise before use); edges: logits [B,1,H,W].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from deltamtl.model.tasks import BLOCK_SITES, TASK_OUT_CHANNELS_FIXED
from torch import nn

# the block sites, under the name this module has always exported (model/tasks.py)
SITE_NAMES = BLOCK_SITES
GELU_APPROXIMATE = "tanh"


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/p)*(W/p), C*p*p]; rows in raster order, patch flattened (c, dy, dx)."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of patch {patch}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    x = x.permute(0, 2, 4, 1, 3, 5)  # b, gy, gx, c, dy, dx
    return x.reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(tokens: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: [B, N, C*p*p] -> [B, C, H, W]."""
    b = tokens.shape[0]
    gy, gx = height // patch, width // patch
    x = tokens.reshape(b, gy, gx, channels, patch, patch)
    x = x.permute(0, 3, 1, 4, 2, 5)  # b, c, gy, dy, gx, dx
    return x.reshape(b, channels, height, width)


class Attention(nn.Module):
    """Multi-head self-attention with sites ``qkv`` and ``proj``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # qkv output layout: [q | k | v], each split into heads contiguously.
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class Mlp(nn.Module):
    """Feed-forward with sites ``fc1`` and ``fc2`` and a tanh-GELU between them."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=GELU_APPROXIMATE)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(round(dim * mlp_ratio)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Patch embedding (a Linear over flattened patches) + learned positions + blocks + norm."""

    def __init__(self, mcfg: dict) -> None:
        super().__init__()
        dim, p, size = mcfg["embed_dim"], mcfg["patch_size"], mcfg["img_size"]
        self.patch_size = p
        self.grid = size // p
        self.patch_embed = nn.Linear(3 * p * p, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, dim))
        self.blocks = nn.ModuleList(
            Block(dim, mcfg["num_heads"], mcfg["mlp_ratio"], mcfg["qkv_bias"], mcfg["ln_eps"])
            for _ in range(mcfg["depth"])
        )
        self.norm = nn.LayerNorm(dim, eps=mcfg["ln_eps"])

    def embed(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Normalised images [B,3,H,W] -> tokens [B,N,D] before the first block."""
        tokens = self.patch_embed(patchify(x_norm, self.patch_size))
        if tokens.shape[1] != self.pos_embed.shape[1]:
            raise ValueError(
                f"got {tokens.shape[1]} patches, the position embedding has {self.pos_embed.shape[1]}"
                f" (model.img_size is {self.grid * self.patch_size})"
            )
        return tokens + self.pos_embed

    def forward(self, x_norm: torch.Tensor) -> torch.Tensor:
        x = self.embed(x_norm)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class DenseHead(nn.Module):
    """Tokens -> per-pixel map: Linear to p*p*c, unpatchify, concat image, 3x3 convs.

    The image concatenation gives the refinement pixel-precise boundaries that the
    patch-level tokens lack.
    """

    def __init__(self, dim: int, patch: int, channels: int, convs: int, out_channels: int) -> None:
        super().__init__()
        self.patch = patch
        self.channels = channels
        self.proj = nn.Linear(dim, patch * patch * channels)
        layers: list[nn.Module] = []
        in_ch = channels + 3
        for _ in range(max(convs - 1, 0)):
            layers += [nn.Conv2d(in_ch, channels, 3, padding=1), nn.GELU(approximate=GELU_APPROXIMATE)]
            in_ch = channels
        self.refine = nn.Sequential(*layers)
        self.out = nn.Conv2d(in_ch, out_channels, 3, padding=1) if convs > 0 else nn.Conv2d(in_ch, out_channels, 1)

    def forward(self, tokens: torch.Tensor, x_norm: torch.Tensor) -> torch.Tensor:
        h, w = x_norm.shape[-2:]
        feat = unpatchify(self.proj(tokens), self.patch, self.channels, h, w)
        return self.out(self.refine(torch.cat([feat, x_norm], dim=1)))


def task_out_channels(task: str, num_classes: int) -> int:
    if task == "semseg":
        return num_classes
    if task in TASK_OUT_CHANNELS_FIXED:
        return TASK_OUT_CHANNELS_FIXED[task]
    raise ValueError(f"unknown task {task!r}; known: semseg, {', '.join(TASK_OUT_CHANNELS_FIXED)}")


def resolve_num_classes(mcfg: dict) -> int:
    """``model.num_classes``, or the synthetic data set's NUM_CLASSES when it is null."""
    if mcfg.get("num_classes") is not None:
        return int(mcfg["num_classes"])
    from deltamtl.model.data.synthetic import NUM_CLASSES

    return int(NUM_CLASSES)


class MultiTaskViT(nn.Module):
    """Shared ViT encoder + one :class:`DenseHead` per task. One task = a single-task model.

    ``forward(images, task=None)`` returns ``{task: output}`` for every task (or just
    ``task``); the encoder runs once per call.
    """

    def __init__(self, cfg: dict, tasks: Sequence[str]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("MultiTaskViT needs at least one task")
        mcfg = cfg["model"] if "model" in cfg else cfg
        self.tasks = tuple(tasks)
        self.num_classes = resolve_num_classes(mcfg)
        self.img_size = mcfg["img_size"]
        self.register_buffer("pixel_mean", torch.tensor(mcfg["pixel_mean"], dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(mcfg["pixel_std"], dtype=torch.float32).view(1, 3, 1, 1))
        self.encoder = ViTEncoder(mcfg)
        self.heads = nn.ModuleDict(
            {
                t: DenseHead(mcfg["embed_dim"], mcfg["patch_size"], mcfg["head_channels"],
                             mcfg["head_convs"], task_out_channels(t, self.num_classes))
                for t in self.tasks
            }
        )
        self._init_weights(float(mcfg["depth_init_m"]))

    def _init_weights(self, depth_init_m: float) -> None:
        nn.init.trunc_normal_(self.encoder.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if "depth" in self.heads:
            # Start near a typical scene depth so L1 gradients are informative at once.
            nn.init.constant_(self.heads["depth"].out.bias, depth_init_m)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W], got {tuple(images.shape)}")
        return (images - self.pixel_mean) / self.pixel_std

    def forward(self, images: torch.Tensor, task: str | None = None) -> dict[str, torch.Tensor]:
        tasks = self._select(task)
        x_norm = self.normalize(images)
        tokens = self.encoder(x_norm)
        return {t: self.heads[t](tokens, x_norm) for t in tasks}

    def _select(self, task: str | Iterable[str] | None) -> tuple[str, ...]:
        if task is None:
            return self.tasks
        wanted = (task,) if isinstance(task, str) else tuple(task)
        for t in wanted:
            if t not in self.heads:
                raise KeyError(f"model has no head for task {t!r}; it has {self.tasks}")
        return wanted


def build_model(cfg: dict, tasks: Sequence[str]) -> MultiTaskViT:
    return MultiTaskViT(cfg, tasks)


def linear_sites(model: nn.Module) -> dict[str, nn.Linear]:
    """Qualified name -> nn.Linear for every accelerator site (patch embed + block linears).

    Names look like ``encoder.patch_embed`` and ``encoder.blocks.3.mlp.fc1``.
    """
    sites: dict[str, nn.Linear] = {}
    for name, module in model.named_modules():
        is_embed = name.endswith("encoder.patch_embed")
        is_block_site = ".blocks." in name and any(name.endswith("." + s) for s in BLOCK_SITES)
        if is_embed or is_block_site:
            sites[name] = module
    return sites


def count_macs_per_image(cfg: dict) -> dict[str, int]:
    """Dense multiply-accumulates per image of the encoder's linear sites and attention core."""
    m = cfg["model"] if "model" in cfg else cfg
    d, p, n = m["embed_dim"], m["patch_size"], (m["img_size"] // m["patch_size"]) ** 2
    hidden = int(round(d * m["mlp_ratio"]))
    per_block_linear = n * (d * 3 * d + d * d + d * hidden + hidden * d)
    return {
        "patch_embed": n * 3 * p * p * d,
        "blocks_linear": m["depth"] * per_block_linear,
        "attention_core": m["depth"] * 2 * n * n * d,
        "tokens": n,
    }


def gelu_tanh_reference(x: torch.Tensor) -> torch.Tensor:
    """The GELU the model uses, written out (for host re-implementations to compare with)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


__all__ = [
    "Attention", "Block", "DenseHead", "Mlp", "MultiTaskViT", "ViTEncoder", "SITE_NAMES",
    "build_model", "count_macs_per_image", "gelu_tanh_reference", "linear_sites", "patchify",
    "unpatchify",
]
