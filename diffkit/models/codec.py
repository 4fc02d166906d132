"""The codec protocol: what a latent model asks of the autoencoder that decodes its samples.

A latent :class:`~diffkit.models.contract.Model` generates in a codec's latent space and
reads the images back through it. diffkit's own VAEs
(:class:`diffkit.methods.vae.LatentCodec`) and pretrained diffusers autoencoders
(:class:`diffkit.external.vae.PretrainedCodec`) both satisfy :class:`Codec` as
:class:`NetCodec` subclasses: one ``encode`` and ``decode`` around their networks, which
run in slices through :func:`batched`, so a batch of any size costs the memory of one slice
and the result does not depend on the slicing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from diffkit.data.images import to_unit_range
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
        """images: ``(B, *image_shape)`` float in [-1, 1] (or uint8) -> ``(B, *latent_shape)``: the
        posterior mean, or with ``sample`` a posterior sample (noise from ``generator``)."""
        ...

    def decode(self, latents: Tensor, *, batch_size: int = ...) -> Tensor:
        """latents: ``(B, *latent_shape)`` -> images ``(B, *image_shape)`` float in [-1, 1]."""
        ...


def batched(
    step: Callable[[Tensor], Tensor],
    x: Tensor,
    out_shape: tuple[int, ...],
    batch_size: int,
    device: torch.device,
) -> Tensor:
    """``step`` over ``x`` (B, ...) in slices of ``batch_size``, each moved to ``device``
    first; its float32 outputs ``(b, *out_shape)`` come back to ``x``'s device, concatenated
    to ``(B, *out_shape)`` (empty for an empty ``x``)."""
    out = [x.new_zeros((0, *out_shape), dtype=torch.float32)]
    for start in range(0, x.shape[0], batch_size):
        out.append(step(x[start : start + batch_size].to(device)).to(x.device))
    return torch.cat(out)


def check_shape(x: Tensor, want: tuple[int, ...], what: str, codec: str) -> None:
    """``x`` ``(B, *want)`` or a one-line ConfigError naming ``what`` it holds and the ``codec``
    ("VAE runs/x", "autoencoder hf:...") it does not fit."""
    if tuple(x.shape[1:]) != tuple(want):
        raise ConfigError(
            f"{what} of shape {tuple(x.shape[1:])} do not fit the {codec} (wants {want})"
        )


class NetCodec:
    """``encode``, ``decode`` and ``device`` of a :class:`Codec` around one network ``net``,
    for a subclass that says how its network reads one slice: :meth:`posterior` and
    :meth:`decode_slice`. Both directions check the shape they are given, run in slices of
    ``batch_size`` (default: the class's ``BATCH``) through :func:`batched` and apply the
    latent scaling ``(z - shift) * scale`` here, so every codec scales and samples alike."""

    BATCH: ClassVar[int]  # slices of encode / decode when no batch_size is given
    KIND: ClassVar[str]  # what messages call the codec: "VAE", "autoencoder"
    net: nn.Module
    shift: float
    scale: float
    source: str

    image_shape: tuple[int, ...]  # the subclass's (a property)
    latent_shape: tuple[int, ...]

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: ``(b, *image_shape)`` float in [-1, 1] on ``device`` -> the posterior's (mean,
        std), each ``(b, *latent_shape)``, unscaled."""
        raise NotImplementedError

    def decode_slice(self, z: Tensor) -> Tensor:
        """z: ``(b, *latent_shape)`` float32 unscaled latents on ``device`` -> float32 images
        ``(b, *image_shape)`` in [-1, 1]."""
        raise NotImplementedError

    @torch.no_grad()
    def encode(
        self,
        images: Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
    ) -> Tensor:
        """images: (B, C, H, W) float in [-1, 1] (or uint8) -> scaled latents ``(B,
        *latent_shape)``, float32 on the images' device.

        The posterior mean, or with ``sample`` a posterior sample (noise from ``generator``),
        then ``(z - shift) * scale``.
        """
        check_shape(images, self.image_shape, "images", f"{self.KIND} {self.source}")

        def step(x: Tensor) -> Tensor:  # (b, C, H, W) on the codec's device
            x = to_unit_range(x) if x.dtype == torch.uint8 else x.float()
            mean, std = self.posterior(x)
            z = mean
            if sample:
                where = generator.device if generator is not None else mean.device
                eps = torch.randn(mean.shape, generator=generator, device=where).to(mean.device)
                z = mean + std * eps
            return (z.float() - self.shift) * self.scale

        size = self.BATCH if batch_size is None else batch_size
        return batched(step, images, self.latent_shape, size, self.device)

    @torch.no_grad()
    def decode(self, latents: Tensor, *, batch_size: int | None = None) -> Tensor:
        """Scaled latents ``(B, *latent_shape)`` -> images (B, C, H, W) float in [-1, 1]."""
        check_shape(latents, self.latent_shape, "latents", f"{self.KIND} {self.source}")

        def step(z: Tensor) -> Tensor:  # (b, *latent_shape) on the codec's device
            return self.decode_slice(z.float() / self.scale + self.shift)

        size = self.BATCH if batch_size is None else batch_size
        return batched(step, latents, self.image_shape, size, self.device)
