"""The VAE networks: shapes, the flat MNIST VAE's layers (docs/vae.md), the output range,
the spatial VAE's levels and its unchanged default."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from diffkit.config.model import VAEConfig
from diffkit.nn import build_model, count_parameters
from diffkit.nn.vae import VAE, Block, FlatVAE, SpatialVAE


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


def test_flat_layers_match_the_documented_mnist_vae():
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


# The spatial default before channel_mults / num_res_blocks / patch_size existed, recorded
# from that code: its parameter count and the sha256 of its state dict's names and shapes.
LEGACY = {(1, 28): (369_420, "42b9039c85dc2903"), (3, 32): (374_036, "194c093c4c0fe86b")}


def _layout(net: nn.Module) -> str:
    text = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in net.state_dict().items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize(("channels", "size"), list(LEGACY))
def test_the_default_spatial_vae_is_the_legacy_network(channels, size):
    cfg = VAEConfig(latent="spatial", in_channels=channels, image_size=size)
    assert (cfg.patch_size, cfg.channel_mults, cfg.num_res_blocks) == (2, (1, 2), 1)
    net = build_model(cfg)
    assert (count_parameters(net), _layout(net)) == LEGACY[(channels, size)]
    assert cfg.downsampling == 4 and cfg.latent_shape == (4, size // 4, size // 4)


def test_an_old_config_validates_and_builds_the_same_network():
    old = {"kind": "vae", "latent": "spatial", "in_channels": 1, "image_size": 28,
           "latent_dim": 64, "latent_channels": 4, "base_channels": 32,
           "norm_groups": 8}  # fmt: skip
    cfg = VAEConfig.model_validate(old)  # a config.json written before the new fields
    assert cfg == VAEConfig(**old, patch_size=2, channel_mults=(1, 2), num_res_blocks=1)
    net = build_model(cfg)
    assert (count_parameters(net), _layout(net)) == LEGACY[(1, 28)]


@pytest.mark.parametrize(
    ("mults", "patch", "blocks", "latent"),
    [((1, 2), 1, 1, (3, 16, 16)), ((1, 2), 2, 2, (3, 8, 8)), ((1, 2, 4), 1, 2, (3, 8, 8)),
     ((1, 2, 4), 2, 1, (3, 4, 4))],
)  # fmt: skip
def test_levels_and_patch_set_the_latent_side(mults, patch, blocks, latent):
    cfg = VAEConfig(latent="spatial", in_channels=3, image_size=32, base_channels=8,
                    channel_mults=mults, patch_size=patch, num_res_blocks=blocks,
                    latent_channels=3)  # fmt: skip
    net = build_model(cfg)
    assert net.latent_shape == cfg.latent_shape == latent
    assert cfg.downsampling == 32 // latent[1]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mu, logvar = net.encode(x)
    assert mu.shape == logvar.shape == (2, *latent)
    logits, _, _ = net(x, torch.Generator().manual_seed(0))
    assert logits.shape == net.decode_logits(mu).shape == net.decode(mu).shape == x.shape
    blocks_per_level = sum(isinstance(m, Block) for m in net.encoder)
    assert blocks_per_level == blocks * len(mults)


def test_the_kl_f4_net_is_the_imagenet100_recipes_autoencoder():
    from diffkit.config.run import VAE_NETS
    from diffkit.nn.build import meta_model

    cfg = VAEConfig(in_channels=3, image_size=32, **VAE_NETS["kl-f4"])
    assert cfg.latent_shape == (3, 8, 8) and cfg.downsampling == 4
    net = meta_model(cfg)  # 37 M parameters: counted, not allocated
    widths = [m.out_channels for m in net.encoder if isinstance(m, nn.Conv2d)]
    assert widths == [128, 256, 512, 6]  # conv in, two stride-2 convs, (mu, logvar) x 3
    assert 30e6 < count_parameters(net) < 45e6
    small = VAEConfig(**VAE_NETS["small"])
    assert small == VAEConfig(latent="spatial")  # "small" is the default spatial VAE


def test_bad_level_configs_are_refused():
    with pytest.raises(ValueError, match="divisible by 8"):
        VAEConfig(latent="spatial", channel_mults=(1, 2, 4))  # 28 px, patch 2: f = 8
    with pytest.raises(ValueError, match="channel_mults"):
        VAEConfig(latent="spatial", channel_mults=(1,))
    with pytest.raises(ValueError, match="norm_groups=16 does not divide 24 channels"):
        VAEConfig(latent="spatial", base_channels=8, channel_mults=(2, 3), norm_groups=16)
    with pytest.raises(ValueError, match="divisible by 4"):
        VAEConfig(latent="flat", image_size=30)  # the flat VAE keeps its fixed factor 4
