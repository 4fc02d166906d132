"""Convolutional VAEs for latent diffusion (Kingma & Welling 2014; Rombach et al. 2022).

Both networks share one interface (:class:`VAE`): images ``(B, C, H, W)`` in [-1, 1] map to a
diagonal Gaussian posterior ``(mu, logvar)``, each ``(B, *latent_shape)``, and latents map back
to Bernoulli logits ``(B, C, H, W)`` over [0, 1] pixels. ``decode`` turns logits into images
in [-1, 1]. The sampling noise of ``forward`` comes from an explicit generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffkit.config.model import VAEConfig
from diffkit.nn.layers import SelfAttention2d, Upsample, group_norm, zero_init


class VAE(nn.Module):
    """Base class: subclasses implement :meth:`encode` and :meth:`decode_logits`."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent: ``(D,)`` (flat) or ``(C_lat, H/4, W/4)`` (spatial)."""
        return self.cfg.latent_shape

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, C, H, W) in [-1, 1] -> (mu, logvar), each (B, *latent_shape)."""
        raise NotImplementedError

    def decode_logits(self, z: Tensor) -> Tensor:
        """z: (B, *latent_shape) -> Bernoulli logits (B, C, H, W) of [0, 1] pixels."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """z: (B, *latent_shape) -> images (B, C, H, W) in [-1, 1] (the Bernoulli means)."""
        return torch.sigmoid(self.decode_logits(z)) * 2 - 1

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x: (B, C, H, W) in [-1, 1] -> (logits (B, C, H, W), mu, logvar).

        The logits decode a reparameterised posterior sample ``z = mu + exp(logvar / 2) * eps``
        (Kingma & Welling 2014, Sec. 2.4), ``eps ~ N(0, I)`` drawn from ``generator``.
        """
        mu, logvar = self.encode(x)
        eps = torch.randn(
            mu.shape, generator=generator, device=mu.device, dtype=mu.dtype
        )  # (B, *latent_shape)
        z = mu + torch.exp(0.5 * logvar) * eps
        return self.decode_logits(z), mu, logvar


def _conv_bn_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU()]


class FlatVAE(VAE):
    """The seeds' MNIST VAE (001, Task 2) with a vector latent of ``latent_dim``.

    Encoder: (C, H, W) -> 16 @ H/2 -> 32 @ H/4 -> 64 @ 1x1 (a conv with an H/4 kernel), each
    conv + BatchNorm + ReLU, then two linear heads 64 -> latent_dim. Decoder: linear
    latent_dim -> 64 @ 1x1, transposed convs back to (C, H, W); the seeds' final Sigmoid is
    applied by :meth:`decode` (logits stay available for the Bernoulli likelihood).
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__(cfg)
        c, k = cfg.in_channels, cfg.image_size // 4
        self.encoder = nn.Sequential(
            *_conv_bn_relu(nn.Conv2d(c, 16, 3, stride=2, padding=1), 16),
            *_conv_bn_relu(nn.Conv2d(16, 32, 3, stride=2, padding=1), 32),
            *_conv_bn_relu(nn.Conv2d(32, 64, k), 64),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(64, cfg.latent_dim)
        self.fc_logvar = nn.Linear(64, cfg.latent_dim)
        self.fc_decode = nn.Linear(cfg.latent_dim, 64)
        self.decoder = nn.Sequential(
            *_conv_bn_relu(nn.ConvTranspose2d(64, 32, k), 32),
            *_conv_bn_relu(nn.ConvTranspose2d(32, 16, 3, 2, padding=1, output_padding=1), 16),
            nn.ConvTranspose2d(16, c, 3, 2, padding=1, output_padding=1),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)  # (B, 64)
        return self.fc_mu(h), self.fc_logvar(h)  # (B, D) each

    def decode_logits(self, z: Tensor) -> Tensor:
        h = self.fc_decode(z)[:, :, None, None]  # (B, 64, 1, 1)
        return self.decoder(h)  # (B, C, H, W)


class Block(nn.Module):
    """Residual block without a time embedding: GroupNorm -> SiLU -> 3x3 conv, twice.

    x: (B, C_in, H, W) -> (B, C_out, H, W); the second conv starts at zero (identity block).
    """

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = group_norm(c_out, groups)
        self.conv2 = zero_init(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SpatialVAE(VAE):
    """A residual VAE with a ``latent_channels`` x H/4 x W/4 latent, shaped for UNet denoisers
    (the KL-regularised autoencoder of Rombach et al. 2022, Sec. 3, scaled down to MNIST).

    No layer works at full resolution: the input is pixel-unshuffled 2x2 into channels (as
    the ``small`` UNet does) and the output shuffled back, so a CPU trains it in minutes.
    Encoder: unshuffle -> conv @ H/2 (b) -> Block -> stride-2 conv @ H/4 (2b) -> Block ->
    self-attention -> GroupNorm, SiLU, conv to 2 * latent_channels (mu, logvar). Decoder:
    conv from latent_channels @ H/4 (2b) -> Block -> self-attention -> Block -> up @ H/2 ->
    Block (2b -> b) -> GroupNorm, SiLU, conv to 4C logits -> shuffle to (C, H, W). ``b`` is
    ``base_channels``.
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__(cfg)
        b, c2, g = cfg.base_channels, 2 * cfg.base_channels, cfg.norm_groups
        c, lc = cfg.in_channels, cfg.latent_channels
        head_ch = 32 if c2 % 32 == 0 else c2  # channels per attention head
        self.encoder = nn.Sequential(
            nn.PixelUnshuffle(2),  # (B, 4C, H/2, W/2)
            nn.Conv2d(4 * c, b, 3, padding=1),
            Block(b, b, g),
            nn.Conv2d(b, c2, 3, stride=2, padding=1),  # H/4
            Block(c2, c2, g),
            SelfAttention2d(c2, head_ch, g),
            group_norm(c2, g),
            nn.SiLU(),
            nn.Conv2d(c2, 2 * lc, 3, padding=1),
        )
        self.dec_in = nn.Sequential(
            nn.Conv2d(lc, c2, 3, padding=1),
            Block(c2, c2, g),
            SelfAttention2d(c2, head_ch, g),
            Block(c2, c2, g),
        )
        self.up, self.block = Upsample(c2), Block(c2, b, g)  # H/2
        self.dec_out = nn.Sequential(
            group_norm(b, g), nn.SiLU(), nn.Conv2d(b, 4 * c, 3, padding=1), nn.PixelShuffle(2)
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, C_lat, H/4, W/4) each
        return mu, logvar

    def decode_logits(self, z: Tensor) -> Tensor:
        h = self.dec_in(z)  # (B, 2b, H/4, W/4)
        half = self.cfg.image_size // 2
        h = self.block(self.up(h, (half, half)))  # (B, b, H/2, W/2)
        return self.dec_out(h)  # (B, C, H, W)


def build_vae(cfg: VAEConfig) -> VAE:
    """The VAE the config's ``latent`` names."""
    match cfg.latent:
        case "flat":
            return FlatVAE(cfg)
        case "spatial":
            return SpatialVAE(cfg)
    raise ValueError(f"unknown VAE latent {cfg.latent!r}")
