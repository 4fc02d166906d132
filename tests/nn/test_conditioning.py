"""Class conditioning routes, the null class, the transformer bottleneck, the MLP denoiser."""

from __future__ import annotations

import itertools

import pytest
import torch

from diffkit.config.model import MLPConfig, UNetConfig
from diffkit.nn import build_model
from diffkit.nn.conditioning import drop_labels
from diffkit.nn.layers import DiTBlock, TransformerBottleneck

ROUTES = [r for n in (1, 2, 3) for r in itertools.combinations(("time", "input", "cross"), n)]


def small_unet(**kw) -> UNetConfig:
    base = dict(patch_size=2, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                attention_levels=(), head_channels=16, norm_groups=8, dropout=0.0)  # fmt: skip
    return UNetConfig(**(base | kw))


def randomized(net: torch.nn.Module) -> torch.nn.Module:
    """Give every parameter random values: zero-initialised output layers would otherwise
    hide whether a label reaches the output at all."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return net.eval()


@pytest.mark.parametrize("routes", ROUTES)
@pytest.mark.parametrize("mid", ["resnet", "transformer"])
def test_every_route_makes_the_output_depend_on_the_label(routes, mid):
    cfg = small_unet(num_classes=10, cond_routes=routes, mid_block=mid, transformer_heads=2,
                     cross_attention_levels=(1,) if "cross" in routes else ())  # fmt: skip
    net = randomized(build_model(cfg))
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 600])
    with torch.no_grad():
        a = net(x, t, torch.tensor([1, 1]))
        b = net(x, t, torch.tensor([7, 7]))
    assert a.shape == x.shape
    assert not torch.allclose(a, b, atol=1e-4)


def test_none_means_the_null_class():
    net = randomized(build_model(small_unet(num_classes=10, cond_routes=("time", "input"))))
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3])
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, None), net(x, t, torch.full((3,), 10)))


def test_unconditional_net_ignores_labels():
    net = randomized(build_model(small_unet()))
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 500])
    with torch.no_grad():
        torch.testing.assert_close(net(x, t, torch.tensor([0, 1])), net(x, t, None))


def test_drop_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (10_000,), generator=g)
    assert torch.equal(drop_labels(y, 0.0, 10, g), y)
    assert (drop_labels(y, 0.999999, 10, g) == 10).all()
    dropped = drop_labels(y, 0.1, 10, g)
    share = (dropped == 10).float().mean().item()
    assert 0.09 < share < 0.11
    kept = dropped != 10
    assert torch.equal(dropped[kept], y[kept])  # the rest keep their label


def test_dit_block_starts_as_the_identity():
    block = DiTBlock(32, 4, emb_dim=64, context_dim=16)
    x, emb, ctx = torch.randn(2, 9, 32), torch.randn(2, 64), torch.randn(2, 3, 16)
    torch.testing.assert_close(block(x, emb, ctx), x)  # AdaLN-Zero gates and cross out = 0


def test_transformer_bottleneck_shapes_and_time_dependence():
    tb = TransformerBottleneck(32, size=4, depth=2, heads=4, emb_dim=64)
    randomized(tb)
    x = torch.randn(2, 32, 4, 4)
    a, b = tb(x, torch.zeros(2, 64)), tb(x, torch.ones(2, 64))
    assert a.shape == x.shape and not torch.allclose(a, b)


def test_transformer_heads_must_divide_channels():
    with pytest.raises(ValueError, match="transformer_heads"):
        small_unet(mid_block="transformer", transformer_heads=3)


@pytest.mark.parametrize("num_classes", [None, 10])
def test_mlp_denoiser(num_classes):
    net = randomized(build_model(MLPConfig(dim=16, hidden=32, depth=2, num_classes=num_classes)))
    x, t = torch.randn(4, 16), torch.tensor([0, 10, 500, 999])
    with torch.no_grad():
        out = net(x, t, None)
        assert out.shape == x.shape
        if num_classes:
            assert not torch.allclose(net(x, t, torch.full((4,), 3)), out)
