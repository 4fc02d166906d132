import pytest
import torch

from diffkit.config import PRESETS, UNetConfig
from diffkit.nn import build_model, count_parameters


@pytest.mark.parametrize("preset", [p for p in PRESETS if not p.startswith("latent-")])
def test_preset_networks_map_images_to_images(preset):
    cfg = UNetConfig(**PRESETS[preset]["model"])
    net = build_model(cfg).eval()
    x = torch.randn(2, 1, 28, 28)
    out = net(x, torch.tensor([0, 999]))
    assert out.shape == x.shape
    assert count_parameters(net) > 0


@pytest.mark.parametrize(
    ("size", "channels", "patch", "mults"),
    [(28, 1, 1, (1, 2)), (28, 1, 2, (1, 2, 2)), (32, 3, 1, (1, 2, 2, 2)), (32, 3, 2, (1, 2))],
)
def test_unet_shapes(size, channels, patch, mults):
    cfg = UNetConfig(
        in_channels=channels,
        image_size=size,
        patch_size=patch,
        base_channels=16,
        channel_mults=mults,
        num_res_blocks=1,
        attention_levels=(1,),
        norm_groups=8,
    )
    net = build_model(cfg)
    out = net(torch.randn(3, channels, size, size), torch.randint(0, 1000, (3,)))
    assert out.shape == (3, channels, size, size)


def test_output_layer_starts_at_zero_and_time_matters():
    cfg = UNetConfig(**PRESETS["tiny"]["model"])
    net = build_model(cfg).eval()
    x = torch.randn(2, 1, 28, 28)
    assert net(x, torch.tensor([5, 5])).abs().max() == 0  # zero-initialised output conv
    for p in net.parameters():  # perturb so the time path reaches the output
        p.data.add_(0.05 * torch.randn_like(p))
    a, b = net(x, torch.tensor([5, 5])), net(x, torch.tensor([900, 900]))
    assert not torch.allclose(a, b)


def test_config_rejects_inconsistent_values():
    with pytest.raises(ValueError, match="attention_levels"):
        UNetConfig(channel_mults=(1, 2), attention_levels=(3,))
    with pytest.raises(ValueError, match="norm_groups"):
        UNetConfig(base_channels=24, norm_groups=16)
    with pytest.raises(ValueError, match="patch_size"):
        UNetConfig(image_size=28, patch_size=3)


def test_config_checks_the_decoders_concatenated_widths_against_norm_groups():
    """32-64 levels: 64 groups divide every level width, not the 96-channel decoder input
    (64 + its 32-channel skip); found when a benchmark row crashed at build time."""
    with pytest.raises(ValueError, match="norm_groups=64 does not divide 96 channels"):
        UNetConfig(base_channels=32, channel_mults=(1, 2), norm_groups=64, head_channels=32)
    for kw in ({}, {"channel_mults": (1, 2, 3), "num_res_blocks": 2}, {"base_channels": 24}):
        cfg = UNetConfig(**{"attention_levels": (), "head_channels": 8, "norm_groups": 8} | kw)
        net = build_model(cfg)
        seen = {m.num_channels for m in net.modules() if isinstance(m, torch.nn.GroupNorm)}
        assert seen == cfg.norm_widths  # the config walks the same widths the net builds


def test_gelu_network_is_the_silu_network_with_each_block_nonlinearity_swapped():
    """Same parameters (one state dict loads into both), a different output, and a GELU
    block equals the SiLU block's formula with gelu in its two places (the embedding's
    SiLU stays), so nothing else changed."""
    import torch.nn.functional as F

    from diffkit.nn import layers

    silu_cfg = UNetConfig(**PRESETS["tiny"]["model"])
    torch.manual_seed(0)
    silu = build_model(silu_cfg).eval()
    for p in silu.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    gelu = build_model(silu_cfg.model_copy(update={"activation": "gelu"})).eval()
    gelu.load_state_dict(silu.state_dict())  # strict: the same parameters
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 700])
    with torch.no_grad():
        a, b = silu(x, t), gelu(x, t)
    assert not torch.allclose(a, b, atol=1e-4)

    block = silu.down[0].res
    twin = layers.ResBlock(16, 16, 64, 0.0, 8, "gelu").eval()
    twin.load_state_dict(block.state_dict())
    h, emb = torch.randn(2, 16, 14, 14), torch.randn(2, 64)
    with torch.no_grad():
        want = block.conv1(F.gelu(block.norm1(h)))
        scale, shift = block.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        want = block.skip(h) + block.conv2(F.gelu(block.norm2(want) * (1 + scale) + shift))
        torch.testing.assert_close(twin(h, emb), want)
    with pytest.raises(ValueError, match="activation"):
        UNetConfig(activation="relu")
