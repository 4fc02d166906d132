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
        """Shape of one latent: ``(D,)`` (flat) or ``(C_lat, H/f, W/f)`` (spatial)."""
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
    """A small MNIST conv VAE with a vector latent of ``latent_dim``.

    Encoder: (C, H, W) -> 16 @ H/2 -> 32 @ H/4 -> 64 @ 1x1 (a conv with an H/4 kernel), each
    conv + BatchNorm + ReLU, then two linear heads 64 -> latent_dim. Decoder: linear
    latent_dim -> 64 @ 1x1, transposed convs back to (C, H, W); a final Sigmoid is
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


def _up_level(up: Upsample, block: Block, blocks: nn.Sequential, h: Tensor) -> Tensor:
    """One decoder level above the lowest: x2 upsample, then its blocks.
    h: (B, C_in, h, w) -> (B, C_out, 2h, 2w)."""
    h = up(h, (2 * h.shape[-2], 2 * h.shape[-1]))
    return blocks(block(h))


class UpLevel(nn.Module):
    """A decoder level between the lowest and the top: upsample, then ``n`` Blocks, the
    first from ``c_in`` to ``c_out`` channels. x: (B, c_in, h, w) -> (B, c_out, 2h, 2w)."""

    def __init__(self, c_in: int, c_out: int, n: int, groups: int) -> None:
        super().__init__()
        self.up, self.block = Upsample(c_in), Block(c_in, c_out, groups)
        self.blocks = nn.Sequential(*(Block(c_out, c_out, groups) for _ in range(n - 1)))

    def forward(self, h: Tensor) -> Tensor:
        return _up_level(self.up, self.block, self.blocks, h)


class SpatialVAE(VAE):
    """A residual VAE with a ``latent_channels`` x H/f x W/f latent, shaped for UNet denoisers
    (the KL-regularised autoencoder of Rombach et al. 2022, Sec. 3). ``f`` is
    ``cfg.downsampling``: ``patch_size * 2**(levels - 1)``.

    Level ``i`` has ``w_i = base_channels * channel_mults[i]`` channels and ``n =
    num_res_blocks`` Blocks. Encoder: pixel-unshuffle by ``patch_size`` (the default 2 means
    no layer works at full resolution, as in the ``small`` UNet, so a CPU trains it in
    minutes) -> conv to w_0 -> per level: [stride-2 conv w_{i-1} -> w_i unless first] and n
    Blocks -> self-attention -> GroupNorm, SiLU, conv to 2 * latent_channels (mu, logvar).
    Decoder: conv from the latent to w_top -> Block -> self-attention -> n Blocks -> per
    level upwards: upsample x2, n Blocks (the first w_{i+1} -> w_i) -> GroupNorm, SiLU, conv
    to C * patch_size^2 logits -> pixel-shuffle to (C, H, W).

    The defaults (patch 2, mults 1-2, n = 1) are the two-level network this class was before
    it took those fields, parameter for parameter and name for name: the top decoder level's
    modules sit on the VAE as ``up``, ``block`` (and ``blocks``, empty for n = 1), the levels
    between it and the lowest in ``levels``, so that network's checkpoints still load.
    """

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__(cfg)
        widths = [cfg.base_channels * m for m in cfg.channel_mults]
        top, g, n, p = widths[-1], cfg.norm_groups, cfg.num_res_blocks, cfg.patch_size
        c, lc = cfg.in_channels, cfg.latent_channels
        head_ch = 32 if top % 32 == 0 else top  # channels per attention head
        self.encoder = nn.Sequential(
            nn.PixelUnshuffle(p),  # (B, C p^2, H/p, W/p)
            nn.Conv2d(c * p * p, widths[0], 3, padding=1),
            *_encoder_levels(widths, n, g),  # (B, w_top, H/f, W/f)
            SelfAttention2d(top, head_ch, g),
            group_norm(top, g),
            nn.SiLU(),
            nn.Conv2d(top, 2 * lc, 3, padding=1),
        )
        self.dec_in = nn.Sequential(
            nn.Conv2d(lc, top, 3, padding=1),
            Block(top, top, g),
            SelfAttention2d(top, head_ch, g),
            *(Block(top, top, g) for _ in range(n)),
        )
        # decoder levels len-2 .. 1, lowest first; level 0 (the top) is up/block/blocks
        self.levels = nn.ModuleList(
            UpLevel(widths[i + 1], widths[i], n, g) for i in range(len(widths) - 2, 0, -1)
        )
        self.up, self.block = Upsample(widths[1]), Block(widths[1], widths[0], g)
        self.blocks = nn.Sequential(*(Block(widths[0], widths[0], g) for _ in range(n - 1)))
        self.dec_out = nn.Sequential(
            group_norm(widths[0], g),
            nn.SiLU(),
            nn.Conv2d(widths[0], c * p * p, 3, padding=1),
            nn.PixelShuffle(p),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (B, C_lat, H/f, W/f) each
        return mu, logvar

    def decode_logits(self, z: Tensor) -> Tensor:
        h = self.dec_in(z)  # (B, w_top, H/f, W/f)
        for level in self.levels:
            h = level(h)  # (B, w_i, 2h, 2w)
        h = _up_level(self.up, self.block, self.blocks, h)  # (B, w_0, H/p, W/p)
        return self.dec_out(h)  # (B, C, H, W)


def _encoder_levels(widths: list[int], n: int, groups: int) -> list[nn.Module]:
    """Each level's n Blocks, a stride-2 conv (w_{i-1} -> w_i) before every level but the
    first: (B, w_0, h, w) -> (B, w_top, h / 2^(levels-1), w / 2^(levels-1))."""
    layers: list[nn.Module] = []
    for i, width in enumerate(widths):
        if i:
            layers.append(nn.Conv2d(widths[i - 1], width, 3, stride=2, padding=1))
        layers.extend(Block(width, width, groups) for _ in range(n))
    return layers


def build_vae(cfg: VAEConfig) -> VAE:
    """The VAE the config's ``latent`` names."""
    match cfg.latent:
        case "flat":
            return FlatVAE(cfg)
        case "spatial":
            return SpatialVAE(cfg)
    raise ValueError(f"unknown VAE latent {cfg.latent!r}")
