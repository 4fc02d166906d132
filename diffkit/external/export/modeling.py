"""diffusers models around diffkit networks: what ``unet/`` and ``vae/`` of an export hold.

This module is not imported by diffkit itself. :mod:`diffkit.external.export.bundle` copies
it, below the network code of :mod:`diffkit.nn` it imports, into each exported component's
``modeling_diffkit.py``, with the ``diffkit`` imports taken out (their names are defined
earlier in that file), so an export loads with torch and diffusers alone.

Conventions of :class:`DiffkitUNet` (its ``family`` config entry, one
:data:`CONVENTIONS` entry each):

* ``ddpm``: ``timestep`` is the DDPM's integer timestep 0..T-1 (noise at T-1) and the
  output is the network's prediction, of the kind the scheduler's ``prediction_type``
  names (epsilon, sample or v_prediction), as with diffusers' ``UNet2DModel``;
* ``flow``: diffusers' flow matching (``FlowMatchEulerDiscreteScheduler``): ``timestep``
  is ``1000 sigma`` with data at sigma = 0 and noise at sigma = 1, and the output is
  ``noise - data``. diffkit's flows run the other way (noise at t = 0, velocity ``data -
  noise``), so the network sees ``time_scale (1 - sigma)`` and its output is negated.

``class_labels`` (B,) are 0..K-1 for a class-conditional network; K or None is the null
class, the unconditional partner of classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import Tensor, nn

from diffkit.config.model import MLPConfig, UNetConfig, VAEConfig
from diffkit.nn.mlp import MLPDenoiser
from diffkit.nn.unet import UNet
from diffkit.nn.vae import build_vae


def build_network(config: dict[str, Any]) -> nn.Module:
    """The diffkit network a config (the ``network`` entry of config.json) describes."""
    match config.get("kind"):
        case "unet":
            return UNet(UNetConfig(**config))
        case "mlp":
            return MLPDenoiser(MLPConfig(**config))
        case "vae":
            return build_vae(VAEConfig(**config))
    raise ValueError(f"unknown network kind {config.get('kind')!r}")


class DDPMConvention:
    """``ddpm``: the network takes diffusers' timestep and returns its prediction; the
    scheduler lays out its own inference timesteps."""

    @staticmethod
    def call(net: nn.Module, sample: Tensor, t: Tensor, labels: Tensor | None,
             time_scale: float) -> Tensor:  # fmt: skip
        return net(sample, t, labels)

    @staticmethod
    def sigmas(steps: int) -> list[float] | None:
        return None


class FlowConvention:
    """``flow``: diffusers' sigma is diffkit's t = 1 - sigma, and d x / d sigma = noise -
    data the negated velocity; the inference grid is diffkit's uniform one in sigma."""

    @staticmethod
    def call(net: nn.Module, sample: Tensor, t: Tensor, labels: Tensor | None,
             time_scale: float) -> Tensor:  # fmt: skip
        out = net(sample, time_scale - t.to(sample.dtype), labels)
        return -out

    @staticmethod
    def sigmas(steps: int) -> list[float] | None:
        return [1.0 - i / steps for i in range(steps)]  # 1, 1 - 1/S, ..., 1/S


CONVENTIONS = {"ddpm": DDPMConvention, "flow": FlowConvention}
"""How the network of each family meets diffusers' schedulers."""


@dataclass
class DiffkitOutput(BaseOutput):
    """A network's output (B, ...), or decoded images (B, C, H, W) in [-1, 1]."""

    sample: Tensor


class DiffkitUNet(ModelMixin, ConfigMixin):
    """A diffkit denoiser (UNet, or MLP over flat latents) as a diffusers model:
    ``forward(sample (B, *sample_shape), timestep () or (B,), class_labels (B,) or None)``
    returns ``.sample`` shaped like ``sample``. ``in_channels`` and ``sample_size`` are
    those diffusers' ``DDPMPipeline`` reads."""

    @register_to_config
    def __init__(
        self,
        network: dict[str, Any],
        family: str = "ddpm",
        sample_shape: tuple[int, ...] = (1, 28, 28),
        num_classes: int | None = None,
        in_channels: int = 1,
        sample_size: int | None = 28,
        time_scale: float = 1000.0,
        diffkit: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if family not in CONVENTIONS:
            raise ValueError(f"unknown family {family!r}: {' or '.join(CONVENTIONS)}")
        self.net = build_network(network)

    def inference_sigmas(self, steps: int) -> list[float] | None:
        """The sigmas of a ``steps``-step run where the family sets them (None: the
        scheduler's own timesteps)."""
        return CONVENTIONS[self.config.family].sigmas(steps)

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | float | int,
        class_labels: Tensor | None = None,
        return_dict: bool = True,
    ) -> DiffkitOutput | tuple[Tensor]:
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.expand(sample.shape[0]) if t.ndim == 0 else t  # (B,)
        family = CONVENTIONS[self.config.family]
        out = family.call(self.net, sample, t, class_labels, self.config.time_scale)
        return DiffkitOutput(sample=out) if return_dict else (out,)


class DiffkitVAE(ModelMixin, ConfigMixin):
    """A diffkit VAE as a diffusers model. ``decode(latents)`` takes the denoiser's scaled
    latents (B, *latent_shape) and undoes the scaling, ``z = latents / scaling_factor +
    shift_factor`` (the convention of diffusers' ``AutoencoderKL`` with a shift), before
    decoding to ``.sample`` images (B, C, H, W) in [-1, 1]; ``encode(images)`` returns the
    scaled posterior means."""

    @register_to_config
    def __init__(
        self,
        network: dict[str, Any],
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
        diffkit: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.net = build_network(network)

    def encode(self, images: Tensor, return_dict: bool = True) -> DiffkitOutput | tuple[Tensor]:
        mu, _ = self.net.encode(images)  # (B, *latent_shape)
        z = (mu - self.config.shift_factor) * self.config.scaling_factor
        return DiffkitOutput(sample=z) if return_dict else (z,)

    def decode(self, latents: Tensor, return_dict: bool = True) -> DiffkitOutput | tuple[Tensor]:
        z = latents / self.config.scaling_factor + self.config.shift_factor
        images = self.net.decode(z)
        return DiffkitOutput(sample=images) if return_dict else (images,)

    def forward(self, latents: Tensor, return_dict: bool = True) -> DiffkitOutput | tuple[Tensor]:
        return self.decode(latents, return_dict)
