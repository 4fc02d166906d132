"""ControlNet (Zhang, Rao and Agrawala 2023): a trainable copy of a UNet's encoder that
reads a hint image (an edge map) and adds its features to the frozen UNet's skips.

``ControlNet.from_unet(unet, hint_channels)`` copies the base UNet's time embedding, class
conditioner, input conv, down path and middle, weights included. A small hint encoder
brings the hint to the input conv's resolution and width; its last conv is zero
initialised, and so is the 1 x 1 conv after every skip and after the middle (the paper's
"zero convolutions"). A fresh ControlNet's residuals are therefore exactly zero, and the
base model's output is unchanged until training moves them.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from diffkit.nn.layers import zero_init
from diffkit.nn.unet import Residuals, UNet

HINT_WIDTHS = (16, 32)  # the hint encoder's hidden channels


class HintEncoder(nn.Module):
    """(B, hint_channels, H, W) in [0, 1] -> (B, width, H / factor, W / factor): 3 x 3
    convs with SiLU, ``log2(factor)`` of them strided, then a zero-initialised conv."""

    def __init__(self, hint_channels: int, width: int, factor: int = 1) -> None:
        super().__init__()
        if factor < 1 or factor & (factor - 1):
            raise ValueError(f"the hint's downsampling factor must be a power of 2, not {factor}")
        layers: list[nn.Module] = [nn.Conv2d(hint_channels, HINT_WIDTHS[0], 3, padding=1)]
        ch = HINT_WIDTHS[0]
        for _ in range(int(math.log2(factor))):
            layers += [nn.SiLU(), nn.Conv2d(ch, HINT_WIDTHS[1], 3, padding=1, stride=2)]
            ch = HINT_WIDTHS[1]
        layers += [nn.SiLU(), zero_init(nn.Conv2d(ch, width, 3, padding=1))]
        self.net = nn.Sequential(*layers)

    def forward(self, hint: Tensor) -> Tensor:
        return self.net(hint)


class ControlNet(nn.Module):
    """``forward(x, t, cond, hint, scale=1) -> Residuals`` for the UNet it was copied from:
    pass them as ``unet(x, t, cond, residuals=...)``. ``scale`` multiplies every residual
    (0: the base model)."""

    def __init__(self, encoder: UNet, hint: HintEncoder, zero_convs: nn.ModuleList) -> None:
        super().__init__()
        self.encoder, self.hint, self.zero_convs = encoder, hint, zero_convs

    @classmethod
    def from_unet(cls, unet: UNet, hint_channels: int = 1, hint_factor: int | None = None):
        """A ControlNet initialised from ``unet``'s encoder. ``hint_factor`` is how much
        larger the hint is than the UNet's input conv output (default: the patch size;
        for a latent UNet, the autoencoder's downsampling times it)."""
        encoder = copy.deepcopy(unet)
        del encoder.up, encoder.norm_out, encoder.conv_out  # the decoder stays the base's
        widths = [*unet.skip_channels, unet.skip_channels[-1]]  # every skip, then the middle
        zero_convs = nn.ModuleList(zero_init(nn.Conv2d(c, c, 1)) for c in widths)
        factor = unet.cfg.patch_size if hint_factor is None else hint_factor
        return cls(encoder, HintEncoder(hint_channels, unet.conv_in.out_channels, factor),
                   zero_convs)  # fmt: skip

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        cond: Tensor | None,
        hint: Tensor,
        scale: float | Tensor = 1.0,
        guess: bool = False,
    ) -> Residuals:
        """``scale``: a number, or one per row (B,); ``guess`` (guess mode) also weights
        the residuals from 0.1 at the shallowest skip to 1 at the middle, log-spaced, as
        ControlNet's authors do when the hint must carry the content alone."""
        enc = self.encoder.encode(x, t, cond, added=self.hint(hint.to(x.dtype)))
        feats = [*enc.skips, enc.middle]  # shallowest first
        outs = [conv(h) for conv, h in zip(self.zero_convs, feats, strict=True)]
        if isinstance(scale, Tensor):
            scale = scale.to(x.dtype).reshape(-1, 1, 1, 1)  # (B, 1, 1, 1)
        if guess or isinstance(scale, Tensor) or scale != 1.0:
            weights = torch.logspace(-1, 0, len(outs)).tolist() if guess else [1.0] * len(outs)
            outs = [o * (w * scale) for o, w in zip(outs, weights, strict=True)]
        return Residuals(skips=outs[:-1], middle=outs[-1])


class ControlledUNet(nn.Module):
    """What ``diffkit train controlnet`` trains: a :class:`ControlNet` over a frozen UNet,
    ``forward(x, t, cond, hint, scale=1, guess=False) -> (B, C_out, H, W)``.

    The base is held outside the module's parameters and state dict (it is frozen and
    saved elsewhere: its checkpoint, or ``base.*`` when embedded); ``.to()`` still moves
    it. With ``unlock_decoder`` a trainable copy of the base's up path replaces the
    base's own.
    """

    def __init__(self, base: UNet, control: ControlNet, unlock_decoder: bool = False) -> None:
        super().__init__()
        base.requires_grad_(False).eval()  # frozen, and no dropout
        object.__setattr__(self, "base", base)  # not a submodule: not trained, not saved
        self.control = control
        self.decoder: UNet | None = None
        if unlock_decoder:
            decoder = copy.deepcopy(base)
            for name in ("time_embed", "conditioner", "conv_in", "down", "mid"):
                delattr(decoder, name)
            self.decoder = decoder.requires_grad_(True)

    def _apply(self, fn, recurse: bool = True):
        self.base._apply(fn, recurse)  # device and dtype moves reach the frozen base too
        return super()._apply(fn, recurse)

    def __deepcopy__(self, memo: dict) -> ControlledUNet:
        """A copy (e.g. the EMA's) shares the frozen base instead of duplicating it."""
        new = object.__new__(type(self))
        memo[id(self)] = new
        memo[id(self.base)] = self.base
        new.__dict__ = copy.deepcopy(self.__dict__, memo)
        return new

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        hint: Tensor | None = None,
        scale: float | Tensor = 1.0,
        guess: bool = False,
    ) -> Tensor:
        res = None
        if hint is not None:
            res = self.control(x, t, cond, hint, scale, guess)
        if self.decoder is None:
            return self.base(x, t, cond, residuals=res)
        return self.decoder.decode(self.base.encode(x, t, cond), res)
