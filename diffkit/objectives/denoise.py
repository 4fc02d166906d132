"""The single-step denoiser loss: ``E || D(x + sigma eps) - target ||^2``.

sigma is in units of images in [0, 1]; diffkit's images live in [-1, 1], where
the same corruption has standard deviation ``2 sigma`` (:func:`image_sigma`). Per item,
sigma is drawn uniformly from [sigma_min, sigma_max] (one value when they are equal). With
``sigma_input`` the network sees sigma through its time input (:func:`sigma_to_net_time`);
otherwise its time input is 0. ``target="noisy"`` is Noise2Noise (Lehtinen et al. 2018):
the target is a second, independent noisy copy, whose expectation given y is that of the
clean image, so the minimiser is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from diffkit.samplers.common import NET_TIME_SCALE


def image_sigma(sigma: float | Tensor) -> float | Tensor:
    """A sigma on images in [0, 1] in diffkit's units (images in [-1, 1])."""
    return 2 * sigma


def sigma_to_net_time(sigma: Tensor) -> Tensor:
    """What a sigma-conditioned network's time input sees: ``1000 sigma / (1 + sigma)``,
    monotone and within the range a DDPM timestep takes."""
    return NET_TIME_SCALE * sigma / (1 + sigma)


@dataclass(frozen=True)
class DenoiseObjective:
    sigma_min: float = 0.5
    sigma_max: float = 0.5
    sigma_input: bool = False
    target: str = "clean"
    pure_noise: bool = False  # the input is 2 z - 1, z ~ N(0, 1): no image at all

    def sigmas(self, b: int, device, generator: torch.Generator) -> Tensor:
        """(B,) training sigmas, [0, 1] image units."""
        u = torch.rand(b, device=device, generator=generator)
        return self.sigma_min + (self.sigma_max - self.sigma_min) * u

    def corrupt(self, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(noisy input y, target, the network's time input), each (B, ...), for clean x."""
        b = x.shape[0]
        sigma = self.sigmas(b, x.device, generator)
        s = image_sigma(sigma).reshape(b, *([1] * (x.ndim - 1))).to(x.dtype)  # (B, 1, 1, 1)
        y = x + s * torch.randn(x.shape, device=x.device, generator=generator, dtype=x.dtype)
        if self.pure_noise:  # z ~ N(0, 1) in [0, 1] units is 2 z - 1 in diffkit's
            y = 2 * torch.randn(x.shape, device=x.device, generator=generator, dtype=x.dtype) - 1
        target = x
        if self.target == "noisy":
            noise = torch.randn(x.shape, device=x.device, generator=generator, dtype=x.dtype)
            target = x + s * noise
        t = sigma_to_net_time(sigma) if self.sigma_input else torch.zeros_like(sigma)
        return y, target, t.to(x.dtype)

    def __call__(
        self, net: nn.Module, x: Tensor, cond: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        """Mean loss over a batch x: (B, C, H, W) in [-1, 1]."""
        y, target, t = self.corrupt(x, generator)
        return (net(y, t, None).float() - target.float()).pow(2).mean()
