"""Building blocks shared by diffkit networks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The nonlinearity of the residual blocks and the output head, by `UNetConfig.activation`.
ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu}


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters, so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a (B,) tensor of timesteps -> (B, dim)."""

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        args = t.float()[:, None] * self.freqs[None]  # (B, dim/2)
        return torch.cat([args.cos(), args.sin()], dim=-1)


class TimeEmbedding(nn.Module):
    """Sinusoidal features followed by a two-layer MLP: (B,) -> (B, emb_dim)."""

    def __init__(self, base_dim: int, emb_dim: int) -> None:
        super().__init__()
        self.sinusoid = SinusoidalEmbedding(base_dim)
        self.mlp = nn.Sequential(
            nn.Linear(base_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(self.sinusoid(t))


class ResBlock(nn.Module):
    """Residual block with scale-shift time conditioning (Dhariwal & Nichol 2021, Sec. 3).

    x: (B, C_in, H, W), emb: (B, E) -> (B, C_out, H, W).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        emb_dim: int,
        dropout: float,
        groups: int,
        activation: str = "silu",
    ) -> None:
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = group_norm(c_out, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        # The embedding's own SiLU belongs to the time-embedding MLP, not to this choice.
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(self.act(h)))
        return self.skip(x) + h


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, residual.

    x: (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, head_channels: int, groups: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = group_norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """3x3 convolution, then nearest-neighbour resize to the skip's size.

    The convolution runs before the resize, at the low resolution, which costs a quarter of
    the usual resize-then-convolve order for the same receptive field growth.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return F.interpolate(self.conv(x), size=size, mode="nearest")


def _heads(channels: int, head_channels: int) -> int:
    return max(1, channels // head_channels)


class CrossAttention2d(nn.Module):
    """Multi-head cross-attention from feature-map positions to context tokens, residual.

    Queries come from the H*W positions, keys and values from the tokens (Rombach et al.
    2022, Sec. 3.3). x: (B, C, H, W), context: (B, T, D) -> (B, C, H, W).
    """

    def __init__(self, channels: int, context_dim: int, head_channels: int, groups: int) -> None:
        super().__init__()
        self.heads = _heads(channels, head_channels)
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(context_dim, 2 * channels)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        b, c, h, w = x.shape
        hd = c // self.heads
        q = self.q(self.norm(x)).reshape(b, self.heads, hd, h * w).transpose(-1, -2)
        k, v = self.kv(context).reshape(b, -1, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, hd)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """AdaLN: ``x (B, N, C) * (1 + scale) + shift`` with (B, C) shift and scale."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """A transformer block with AdaLN-Zero conditioning (Peebles & Xie 2023, Sec. 3.2).

    The embedding regresses shift, scale and a residual gate for the attention and the MLP
    sub-layers; the regression is zero-initialised so the block starts as the identity.
    With ``context_dim`` a cross-attention sub-layer to context tokens sits between them.
    x: (B, N, C), emb: (B, E), context: (B, T, D) or None -> (B, N, C).
    """

    def __init__(
        self, dim: int, heads: int, emb_dim: int, mlp_ratio: float = 4.0,
        context_dim: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        if dim % heads:
            raise ValueError(f"{heads} heads do not divide {dim} channels")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim)
        )
        self.ada = zero_init(nn.Linear(emb_dim, 6 * dim))
        self.cross = None
        if context_dim is not None:
            self.cross_norm = nn.LayerNorm(dim, eps=1e-6)
            self.cross = nn.MultiheadAttention(
                dim, heads, kdim=context_dim, vdim=context_dim, batch_first=True
            )
            zero_init(self.cross.out_proj)

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None = None) -> Tensor:
        b, n, c = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(emb)).chunk(6, dim=1)
        qkv = self.qkv(modulate(self.norm1(x), shift1, scale1))
        q, k, v = qkv.reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        x = x + gate1[:, None] * self.attn_out(attn)
        if self.cross is not None and context is not None:
            h = self.cross_norm(x)
            x = x + self.cross(h, context, context, need_weights=False)[0]
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class TransformerBottleneck(nn.Module):
    """DiT blocks over the tokens of a feature map: flatten the H*W positions, add a
    learnable positional embedding, run ``depth`` :class:`DiTBlock`, fold back.

    x: (B, C, H, W), emb: (B, E) -> (B, C, H, W).
    """

    def __init__(
        self, channels: int, size: int, depth: int, heads: int, emb_dim: int,
        context_dim: int | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, size * size, channels) * 0.02)
        self.blocks = nn.ModuleList(
            DiTBlock(channels, heads, emb_dim, context_dim=context_dim) for _ in range(depth)
        )

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2) + self.pos  # (B, HW, C)
        for block in self.blocks:
            tokens = block(tokens, emb, context)
        return tokens.transpose(1, 2).reshape(b, c, h, w)
