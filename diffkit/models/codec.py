"""The codec protocol: what a latent model asks of the autoencoder that decodes its samples.

A latent :class:`~diffkit.models.contract.Model` generates in a codec's latent space and
reads the images back through it. diffkit's own VAEs
(:class:`diffkit.methods.vae.LatentCodec`) and pretrained diffusers autoencoders
(:class:`diffkit.external.vae.PretrainedCodec`) both satisfy :class:`Codec`; both encode
and decode in slices through :func:`batched`, so a batch of any size costs the memory of
one slice and the result does not depend on the slicing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from diffkit.errors import ConfigError


@runtime_checkable
class Codec(Protocol):
    """Images <-> scaled latents ``(z - shift) * scale`` (unit variance over the training
    images for a diffkit VAE; the autoencoder's own factors for a pretrained one).

    ``encode`` and ``decode`` run under ``no_grad`` on the codec's ``device`` and return
    float32 on the device of their input; ``source`` names where the codec came from and
    ``digest`` is the sha256 of its weights (latent caches and checkpoints key on both).
    """

    shift: float
    scale: float
    source: str
    digest: str

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """One latent: (D,) flat or (C, H/f, W/f) spatial (f: the downsampling)."""
        ...

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """One image: (C, H, W)."""
        ...

    @property
    def device(self) -> torch.device: ...

    def encode(
        self,
        images: Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        batch_size: int = ...,
    ) -> Tensor:
        """images: (B, *image_shape) float in [-1, 1] (or uint8) -> (B, *latent_shape): the
        posterior mean, or with ``sample`` a posterior sample (noise from ``generator``)."""
        ...

    def decode(self, latents: Tensor, *, batch_size: int = ...) -> Tensor:
        """latents: (B, *latent_shape) -> images (B, *image_shape) float in [-1, 1]."""
        ...


def batched(
    step: Callable[[Tensor], Tensor],
    x: Tensor,
    out_shape: tuple[int, ...],
    batch_size: int,
    device: torch.device,
) -> Tensor:
    """``step`` over ``x`` (B, ...) in slices of ``batch_size``, each moved to ``device``
    first; its float32 outputs (b, *out_shape) come back to ``x``'s device, concatenated
    to (B, *out_shape) (empty for an empty ``x``)."""
    out = [x.new_zeros((0, *out_shape), dtype=torch.float32)]
    for start in range(0, x.shape[0], batch_size):
        out.append(step(x[start : start + batch_size].to(device)).to(x.device))
    return torch.cat(out)


def check_shape(x: Tensor, want: tuple[int, ...], what: str, codec: str) -> None:
    """``x`` (B, *want) or a one-line ConfigError naming ``what`` it holds and the ``codec``
    ("VAE runs/x", "autoencoder hf:...") it does not fit."""
    if tuple(x.shape[1:]) != tuple(want):
        raise ConfigError(
            f"{what} of shape {tuple(x.shape[1:])} do not fit the {codec} (wants {want})"
        )
