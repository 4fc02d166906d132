"""A DDPM UNet: residual blocks, self-attention at chosen levels, sinusoidal time embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffkit.config.model import UNetConfig
from diffkit.nn.layers import (
    Downsample,
    ResBlock,
    SelfAttention2d,
    TimeEmbedding,
    Upsample,
    group_norm,
    zero_init,
)


class _Stage(nn.Module):
    """A ResBlock optionally followed by self-attention."""

    def __init__(self, res: ResBlock, attn: nn.Module | None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn if attn is not None else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.attn(self.res(x, emb))


class UNet(nn.Module):
    """``forward(x: (B, C, H, W), t: (B,), cond=None) -> (B, C_out, H, W)``.

    Down path: per level ``num_res_blocks`` stages then a stride-2 conv (not after the last
    level); middle: res, attention, res; up path mirrors it with skip concatenation.
    """

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        base, g, drop = cfg.base_channels, cfg.norm_groups, cfg.dropout
        emb_dim = 4 * base
        self.time_embed = TimeEmbedding(base, emb_dim)
        p2 = cfg.patch_size**2
        self.conv_in = nn.Conv2d(cfg.in_channels * p2, base, 3, padding=1)

        def stage(c_in: int, c_out: int, level: int) -> _Stage:
            attn = (
                SelfAttention2d(c_out, cfg.head_channels, g)
                if level in cfg.attention_levels
                else None
            )
            return _Stage(ResBlock(c_in, c_out, emb_dim, drop, g), attn)

        self.down = nn.ModuleList()
        skips = [base]
        ch = base
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                self.down.append(stage(ch, base * mult, level))
                ch = base * mult
                skips.append(ch)
            if level < len(cfg.channel_mults) - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)

        self.mid1 = ResBlock(ch, ch, emb_dim, drop, g)
        self.mid_attn = (
            SelfAttention2d(ch, cfg.head_channels, g) if cfg.mid_attention else nn.Identity()
        )
        self.mid2 = ResBlock(ch, ch, emb_dim, drop, g)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(stage(ch + skips.pop(), base * mult, level))
                ch = base * mult
            if level > 0:
                self.up.append(Upsample(ch))

        self.norm_out = group_norm(ch, g)
        self.conv_out = zero_init(nn.Conv2d(ch, cfg.out_ch * p2, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        emb = self.time_embed(t)  # (B, 4*base)
        h = self.conv_in(F.pixel_unshuffle(x, self.cfg.patch_size))
        hs = [h]
        for block in self.down:
            h = block(h) if isinstance(block, Downsample) else block(h, emb)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for block in self.up:
            if isinstance(block, Upsample):
                h = block(h, hs[-1].shape[-2:])
            else:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.cfg.patch_size)
