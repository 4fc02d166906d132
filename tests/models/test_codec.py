"""The Codec protocol: diffkit's own VAE and a pretrained diffusers autoencoder both satisfy
it, and their shared slicing (``batched``) gives bit for bit what a plain loop over the
slices gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor

from diffkit.config.run import VAERunConfig
from diffkit.data.loader import to_unit_range
from diffkit.errors import ConfigError
from diffkit.methods.vae import LatentCodec
from diffkit.models.codec import Codec, batched
from diffkit.nn.vae import build_vae

SHIFT, SCALE = 0.25, 1.5


def own_codec() -> LatentCodec:
    """A random spatial VAE (4 x 7 x 7 latents of 28 px gray images) as a LatentCodec."""
    cfg = VAERunConfig.model_validate({"model": {"latent": "spatial", "base_channels": 8}})
    torch.manual_seed(0)
    return LatentCodec(cfg, build_vae(cfg.model).eval(), SHIFT, SCALE, "own")


def images(n: int, shape: tuple[int, ...]) -> Tensor:
    """(n, *shape) uint8 images: encode's [-1, 1] conversion is part of what is compared."""
    return torch.randint(0, 256, (n, *shape), generator=torch.Generator().manual_seed(1),
                         dtype=torch.uint8)  # fmt: skip


@torch.no_grad()
def plain_own_encode(codec: LatentCodec, x: Tensor, batch: int, generator) -> Tensor:
    out = []
    for start in range(0, len(x), batch):
        mu, logvar = codec.net.encode(to_unit_range(x[start : start + batch]))
        eps = torch.randn(mu.shape, generator=generator)
        out.append((mu + torch.exp(0.5 * logvar) * eps - SHIFT) * SCALE)
    return torch.cat(out)


@torch.no_grad()
def plain_own_decode(codec: LatentCodec, z: Tensor, batch: int) -> Tensor:
    return torch.cat([codec.net.decode(z[s : s + batch] / SCALE + SHIFT)
                      for s in range(0, len(z), batch)])  # fmt: skip


def test_both_codecs_are_codecs(tmp_path: Path):
    assert isinstance(own_codec(), Codec)
    pytest.importorskip("diffusers")
    from diffkit.external.vae import load_pretrained_codec
    from tests.external.test_pretrained_vae import tiny_autoencoder

    assert isinstance(load_pretrained_codec(str(tiny_autoencoder(tmp_path / "ae")), 28, 3), Codec)
    assert not isinstance(object(), Codec)


def test_own_codec_slices_as_a_plain_loop():
    codec = own_codec()
    x = images(7, codec.image_shape)
    z = codec.encode(x, sample=True, generator=torch.Generator().manual_seed(2), batch_size=3)
    assert torch.equal(z, plain_own_encode(codec, x, 3, torch.Generator().manual_seed(2)))
    assert z.shape == (7, 4, 7, 7) and z.dtype == torch.float32
    assert torch.equal(codec.decode(z, batch_size=2), plain_own_decode(codec, z, 2))
    assert codec.encode(x[:0]).shape == (0, 4, 7, 7)
    with pytest.raises(ConfigError, match=r"^latents of shape \(3, 7, 7\) do not fit the VAE "
                       r"own \(wants \(4, 7, 7\)\)$"):  # fmt: skip
        codec.decode(z[:, :3])


def test_pretrained_codec_slices_as_a_plain_loop(tmp_path: Path):
    pytest.importorskip("diffusers")
    from diffkit.external.vae import load_pretrained_codec
    from tests.external.test_pretrained_vae import SCALE as S
    from tests.external.test_pretrained_vae import SHIFT as M
    from tests.external.test_pretrained_vae import tiny_autoencoder

    codec = load_pretrained_codec(str(tiny_autoencoder(tmp_path / "ae")), 28, 1)
    x = images(5, codec.image_shape)
    with torch.no_grad():
        rgb = to_unit_range(x).expand(-1, 3, -1, -1)  # (5, 3, 28, 28)
        want = torch.cat([(codec.net.encode(rgb[s : s + 2]).latent_dist.mean - M) * S
                          for s in range(0, 5, 2)])  # fmt: skip
        z = codec.encode(x, batch_size=2)
        assert torch.equal(z, want)
        want = torch.cat([codec.net.decode(z[s : s + 3] / S + M).sample.mean(1, keepdim=True)
                          for s in range(0, 5, 3)])  # fmt: skip
        assert torch.equal(codec.decode(z, batch_size=3), want)


def test_batched_returns_to_the_input_device_in_order():
    x = torch.arange(10.0).reshape(5, 2)  # (5, 2)
    seen = []

    def step(b: Tensor) -> Tensor:
        seen.append(len(b))
        return b.sum(1, keepdim=True)  # (b, 1)

    out = batched(step, x, (1,), 2, torch.device("cpu"))
    assert seen == [2, 2, 1] and torch.equal(out, x.sum(1, keepdim=True))
