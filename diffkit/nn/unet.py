"""A DDPM UNet: residual blocks, self-attention at chosen levels, sinusoidal time embedding,
optional class conditioning (time / input / cross routes) and a transformer bottleneck."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffkit.config.model import UNetConfig
from diffkit.nn.conditioning import ClassConditioner, Conditioning, null_labels
from diffkit.nn.layers import (
    ACTIVATIONS,
    CrossAttention2d,
    Downsample,
    ResBlock,
    SelfAttention2d,
    TimeEmbedding,
    TransformerBottleneck,
    Upsample,
    group_norm,
    zero_init,
)


class _Stage(nn.Module):
    """A ResBlock, optionally followed by self-attention and cross-attention."""

    def __init__(self, res: ResBlock, attn: nn.Module | None, cross: nn.Module | None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn if attn is not None else nn.Identity()
        self.cross = cross

    def forward(self, x: Tensor, emb: Tensor, context: Tensor | None) -> Tensor:
        x = self.attn(self.res(x, emb))
        return self.cross(x, context) if self.cross is not None else x


class _Middle(nn.Module):
    """res, self-attention, res; or a :class:`TransformerBottleneck` in their place.
    Cross-attention to the class tokens follows either when that route is on."""

    def __init__(self, cfg: UNetConfig, ch: int, emb_dim: int, context_dim: int | None) -> None:
        super().__init__()
        g, drop = cfg.norm_groups, cfg.dropout
        self.transformer = None
        if cfg.mid_block == "transformer":
            self.transformer = TransformerBottleneck(
                ch, cfg.bottleneck_size, cfg.transformer_depth, cfg.transformer_heads, emb_dim
            )
        else:
            self.res1 = ResBlock(ch, ch, emb_dim, drop, g, cfg.activation)
            self.attn = SelfAttention2d(ch, cfg.head_channels, g) if cfg.mid_attention else None
            self.res2 = ResBlock(ch, ch, emb_dim, drop, g, cfg.activation)
        self.cross = (
            CrossAttention2d(ch, context_dim, cfg.head_channels, g) if context_dim else None
        )

    def forward(self, h: Tensor, emb: Tensor, context: Tensor | None) -> Tensor:
        if self.transformer is not None:
            h = self.transformer(h, emb)
        else:
            h = self.res1(h, emb)
            h = self.attn(h) if self.attn is not None else h
            h = self.res2(h, emb)
        return self.cross(h, context) if self.cross is not None else h


class UNet(nn.Module):
    """``forward(x: (B, C, H, W), t: (B,), cond: (B,) labels or None) -> (B, C_out, H, W)``.

    Down path: per level ``num_res_blocks`` stages then a stride-2 conv (not after the last
    level); middle (see :class:`_Middle`); up path mirrors it with skip concatenation. With
    ``num_classes`` set, ``cond`` (label ``num_classes`` or ``None`` = the null class) enters
    through ``cond_routes`` (see :mod:`diffkit.nn.conditioning`).
    """

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        base, g, drop = cfg.base_channels, cfg.norm_groups, cfg.dropout
        emb_dim = 4 * base
        self.time_embed = TimeEmbedding(base, emb_dim)
        routes = cfg.cond_routes if cfg.num_classes else ()
        context_dim = 4 * base if "cross" in routes else None
        self.conditioner = (
            ClassConditioner(
                cfg.num_classes, routes, emb_dim=emb_dim, image_size=cfg.image_size,
                context_dim=4 * base, tokens=cfg.context_tokens,
            )
            if cfg.num_classes
            else None
        )  # fmt: skip
        extra_in = 1 if "input" in routes else 0
        p2 = cfg.patch_size**2
        self.conv_in = nn.Conv2d((cfg.in_channels + extra_in) * p2, base, 3, padding=1)

        def stage(c_in: int, c_out: int, level: int) -> _Stage:
            attn = (
                SelfAttention2d(c_out, cfg.head_channels, g)
                if level in cfg.attention_levels
                else None
            )
            cross = (
                CrossAttention2d(c_out, context_dim, cfg.head_channels, g)
                if context_dim and level in cfg.cross_attention_levels
                else None
            )
            return _Stage(ResBlock(c_in, c_out, emb_dim, drop, g, cfg.activation), attn, cross)

        self.down = nn.ModuleList()
        ch = base
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                self.down.append(stage(ch, base * mult, level))
                ch = base * mult
            if level < len(cfg.channel_mults) - 1:
                self.down.append(Downsample(ch))

        self.skip_channels = cfg.skip_channels  # the width of every skip, input conv first
        skips = list(self.skip_channels)
        self.mid = _Middle(cfg, ch, emb_dim, context_dim)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(stage(ch + skips.pop(), base * mult, level))
                ch = base * mult
            if level > 0:
                self.up.append(Upsample(ch))

        self.norm_out = group_norm(ch, g)
        self.act = ACTIVATIONS[cfg.activation]
        self.conv_out = zero_init(nn.Conv2d(ch, cfg.out_ch * p2, 3, padding=1))

    def condition(self, cond: Tensor | None, x: Tensor) -> Conditioning:
        if self.conditioner is None:
            return Conditioning()
        labels = null_labels(cond, x.shape[0], self.cfg.num_classes, x.device)
        return self.conditioner(labels)

    def encode(
        self, x: Tensor, t: Tensor, cond: Tensor | None = None, added: Tensor | None = None
    ) -> Encoded:
        """The down path and the middle: every skip, the middle's output, and what the up
        path needs again. ``added`` (B, base, H/p, W/p) is summed into the input conv's
        output (a ControlNet's hint features)."""
        c = self.condition(cond, x)
        emb = self.time_embed(t)  # (B, 4*base)
        if c.time is not None:
            emb = emb + c.time
        if c.image is not None:
            x = torch.cat([x, c.image.to(x.dtype)], dim=1)  # (B, C+1, H, W)
        h = self.conv_in(F.pixel_unshuffle(x, self.cfg.patch_size))  # (B, base, H/p, W/p)
        if added is not None:
            h = h + added
        hs = [h]
        for block in self.down:
            h = block(h) if isinstance(block, Downsample) else block(h, emb, c.context)
            hs.append(h)
        return Encoded(hs, self.mid(h, emb, c.context), emb, c.context)

    def forward(
        self, x: Tensor, t: Tensor, cond: Tensor | None = None, residuals: Residuals | None = None
    ) -> Tensor:
        """``residuals`` (a ControlNet's) are added to every skip and to the middle's output."""
        return self.decode(self.encode(x, t, cond), residuals)

    def decode(self, enc: Encoded, residuals: Residuals | None = None) -> Tensor:
        """The up path from :meth:`encode`'s result; it reads only ``up``, ``norm_out`` and
        ``conv_out``, so a copy holding just those (an unlocked ControlNet decoder) runs it."""
        hs, h = list(enc.skips), enc.middle
        if residuals is not None:
            hs = [s + r for s, r in zip(hs, residuals.skips, strict=True)]
            h = h + residuals.middle
        for block in self.up:
            if isinstance(block, Upsample):
                h = block(h, hs[-1].shape[-2:])
            else:
                h = block(torch.cat([h, hs.pop()], dim=1), enc.emb, enc.context)
        out = self.conv_out(self.act(self.norm_out(h)))
        return F.pixel_shuffle(out, self.cfg.patch_size)


@dataclass
class Encoded:
    """The down path's result: the skips (input conv first), the middle's output, the time
    embedding and the cross-attention context (None without that route)."""

    skips: list[Tensor]
    middle: Tensor
    emb: Tensor
    context: Tensor | None


@dataclass
class Residuals:
    """What a ControlNet adds to a UNet: one tensor per skip, shaped like it, and one for
    the middle's output."""

    skips: list[Tensor]
    middle: Tensor
