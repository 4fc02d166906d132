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
        self, x: Tensor, t: Tensor, cond: Tensor | None, hint: Tensor, scale: float = 1.0
    ) -> Residuals:
        enc = self.encoder.encode(x, t, cond, added=self.hint(hint))
        outs = [conv(h) for conv, h in zip(self.zero_convs, [*enc.skips, enc.middle], strict=True)]
        if scale != 1.0:
            outs = [scale * o for o in outs]
        return Residuals(skips=outs[:-1], middle=outs[-1])
