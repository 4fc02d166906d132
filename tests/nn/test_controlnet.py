"""ControlNet: a fresh one leaves the base UNet's output exactly unchanged; its residuals
fit every skip; training reaches the zero convs and leaves the base alone."""

from __future__ import annotations

import pytest
import torch

from diffkit.config import PRESETS, UNetConfig
from diffkit.nn import build_model
from diffkit.nn.controlnet import ControlNet

PIXEL_PRESETS = [p for p in PRESETS if not p.startswith("latent-")]


def base(preset: str, **changes) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(UNetConfig(**PRESETS[preset]["model"] | changes)).eval()
    for p in net.parameters():  # a trained base: the output conv is not zero any more
        p.data.add_(0.01 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("preset", PIXEL_PRESETS)
def test_a_fresh_controlnet_is_the_identity(preset: str):
    unet = base(preset)
    ctrl = ControlNet.from_unet(unet, hint_channels=1).eval()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([3, 900])
    hint = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        res = ctrl(x, t, None, hint)
        plain = unet(x, t)
        assert [r.shape for r in res.skips] == [s.shape for s in unet.encode(x, t).skips]
        assert torch.equal(unet(x, t, residuals=res), plain)


def test_class_conditional_and_patched_unets_take_residuals():
    unet = base("tiny", num_classes=10, cond_routes=("time", "cross"), patch_size=2,
                image_size=28)  # fmt: skip
    ctrl = ControlNet.from_unet(unet, hint_channels=1)  # the hint is downsampled by 2
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([5, 500]), torch.tensor([3, 10])
    with torch.no_grad():
        res = ctrl(x, t, y, torch.rand(2, 1, 28, 28))
        assert res.skips[0].shape[-1] == 14
        assert torch.equal(unet(x, t, y, residuals=res), unet(x, t, y))


def test_one_step_trains_the_controlnet_only_and_scale_zero_is_the_base():
    unet = base("tiny")
    for p in unet.parameters():
        p.requires_grad_(False)
    ctrl = ControlNet.from_unet(unet, hint_channels=1)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    opt = torch.optim.SGD(ctrl.parameters(), lr=0.1)
    x, t, hint = torch.randn(4, 1, 28, 28), torch.randint(0, 1000, (4,)), torch.rand(4, 1, 28, 28)
    for _ in range(2):  # the zero convs move first; then the encoder behind them gets gradient
        opt.zero_grad()
        loss = unet(x, t, residuals=ctrl(x, t, None, hint)).pow(2).mean()
        loss.backward()
        assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0
                   for c in ctrl.zero_convs)  # fmt: skip
        opt.step()
    assert ctrl.hint.net[-1].weight.abs().sum() > 0  # the hint encoder's zero conv moved too
    assert all(torch.equal(v, before[k]) for k, v in unet.state_dict().items())
    with torch.no_grad():
        assert torch.equal(unet(x, t, residuals=ctrl(x, t, None, hint, scale=0.0)), unet(x, t))
        assert not torch.equal(unet(x, t, residuals=ctrl(x, t, None, hint)), unet(x, t))


def test_bad_hint_factor():
    with pytest.raises(ValueError, match="power of 2"):
        ControlNet.from_unet(base("tiny"), hint_factor=3)


def test_the_controlled_unet_keeps_its_base_out_of_training_and_saving():
    import copy

    from diffkit.nn.controlnet import ControlledUNet

    unet = base("tiny")
    net = ControlledUNet(unet, ControlNet.from_unet(unet, 1))
    assert all(k.startswith("control.") for k in net.state_dict())
    assert not any(p.requires_grad for p in unet.parameters())
    assert copy.deepcopy(net).base is unet  # an EMA copy shares the frozen base
    x, t, hint = torch.randn(3, 1, 28, 28), torch.tensor([1, 500, 999]), torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net(x, t, None, hint), unet(x, t))  # fresh: the base
        for p in net.control.zero_convs.parameters():
            p.add_(0.1)
        rows = torch.tensor([0.0, 1.0, 2.0])  # per-row scale: row 0 is the base
        out = net(x, t, None, hint, rows)
        assert torch.equal(out[0], unet(x, t)[0]) and not torch.equal(out[1], unet(x, t)[1])
        guess = net(x, t, None, hint, 1.0, guess=True)
        assert not torch.equal(guess, net(x, t, None, hint))
    net.double()
    assert next(unet.parameters()).dtype == torch.float64  # moves reach the base


def test_an_unlocked_decoder_is_a_trainable_copy():
    from diffkit.nn.controlnet import ControlledUNet

    unet = base("tiny")
    net = ControlledUNet(unet, ControlNet.from_unet(unet, 1), unlock_decoder=True)
    keys = net.state_dict().keys()
    assert any(k.startswith("decoder.up.") for k in keys)
    assert not any(k.startswith(("decoder.down.", "decoder.mid.")) for k in keys)
    x, t, hint = torch.randn(2, 1, 28, 28), torch.tensor([3, 700]), torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(net(x, t, None, hint), unet(x, t))
    net(x, t, None, hint).pow(2).mean().backward()
    assert net.decoder.conv_out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in unet.parameters())


def test_a_latent_unet_gets_a_hint_four_times_its_size():
    unet = base("latent-spatial", in_channels=4, image_size=7)
    ctrl = ControlNet.from_unet(unet, hint_channels=1, hint_factor=4)  # 28x28 hint, 7x7 latents
    x, t, hint = torch.randn(2, 4, 7, 7), torch.tensor([10, 800]), torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        res = ctrl(x, t, None, hint)
        assert [r.shape for r in res.skips] == [s.shape for s in unet.encode(x, t).skips]
        assert res.middle.shape == unet.encode(x, t).middle.shape
        assert torch.equal(unet(x, t, residuals=res), unet(x, t))
