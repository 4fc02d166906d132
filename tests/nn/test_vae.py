"""The VAE networks: shapes, the seeds' flat architecture, the output range."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffkit.config.model import VAEConfig
from diffkit.nn import build_model, count_parameters
from diffkit.nn.vae import VAE, FlatVAE, SpatialVAE


@pytest.mark.parametrize("latent", ["flat", "spatial"])
@pytest.mark.parametrize(("size", "channels"), [(28, 1), (32, 3)])
def test_shapes(latent, size, channels):
    cfg = VAEConfig(latent=latent, image_size=size, in_channels=channels, latent_dim=16)
    net = build_model(cfg)
    assert isinstance(net, FlatVAE if latent == "flat" else SpatialVAE)
    want = (16,) if latent == "flat" else (4, size // 4, size // 4)
    assert net.latent_shape == want == cfg.latent_shape
    x = torch.rand(3, channels, size, size) * 2 - 1
    mu, logvar = net.encode(x)
    assert mu.shape == logvar.shape == (3, *want)
    logits, mu2, _ = net(x, torch.Generator().manual_seed(0))
    assert logits.shape == x.shape and torch.equal(mu, mu2)
    assert net.decode_logits(mu).shape == x.shape


def test_flat_layers_match_the_seeds():
    net = build_model(VAEConfig(latent="flat", latent_dim=64))
    convs = [(type(m).__name__, m.in_channels, m.out_channels, m.kernel_size, m.stride,
              m.padding) for m in net.encoder if isinstance(m, nn.Conv2d)]  # fmt: skip
    assert convs == [
        ("Conv2d", 1, 16, (3, 3), (2, 2), (1, 1)),
        ("Conv2d", 16, 32, (3, 3), (2, 2), (1, 1)),
        ("Conv2d", 32, 64, (7, 7), (1, 1), (0, 0)),
    ]
    kinds = [type(m).__name__ for m in net.encoder]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU"] * 3 + ["Flatten"]
    assert (net.fc_mu.in_features, net.fc_mu.out_features) == (64, 64)
    assert (net.fc_logvar.in_features, net.fc_decode.out_features) == (64, 64)
    deconvs = [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.output_padding)
               for m in net.decoder if isinstance(m, nn.ConvTranspose2d)]  # fmt: skip
    assert deconvs == [
        (64, 32, (7, 7), (1, 1), (0, 0)),
        (32, 16, (3, 3), (2, 2), (1, 1)),
        (16, 1, (3, 3), (2, 2), (1, 1)),
    ]
    assert [type(m).__name__ for m in net.decoder][-1] == "ConvTranspose2d"  # Sigmoid in decode


def test_decode_is_in_range_and_sizes_are_small():
    for latent in ("flat", "spatial"):
        net: VAE = build_model(VAEConfig(latent=latent)).eval()
        z = 10 * torch.randn(5, *net.latent_shape)
        out = net.decode(z)
        assert out.min() >= -1 and out.max() <= 1
        assert 100_000 < count_parameters(net) < 1_000_000


def test_spatial_gradients_reach_the_encoder():
    net = build_model(VAEConfig(latent="spatial", base_channels=16))
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    logits, mu, _ = net(x, torch.Generator().manual_seed(0))
    (logits.square().mean() + mu.square().mean()).backward()
    assert net.encoder[1].weight.grad.abs().sum() > 0  # the first conv, after the unshuffle


def test_bad_norm_groups_is_a_config_error():
    with pytest.raises(ValueError, match="norm_groups"):
        VAEConfig(latent="spatial", base_channels=12, norm_groups=8)
