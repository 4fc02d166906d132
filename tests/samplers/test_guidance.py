"""Classifier-free guidance: w = 1 is the conditional model, w = 0 the unconditional one,
and the batched forward equals two separate ones."""

from __future__ import annotations

import pytest
import torch

from diffkit.samplers.guidance import guided


class Recorder(torch.nn.Module):
    """A toy conditional network: output depends on x, t and the label; counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x, t, cond):
        self.calls += 1
        return x * (1 + cond.float()[:, None]) + t.float()[:, None] * 0.01


@pytest.fixture
def setup():
    x, t = torch.randn(4, 3), torch.tensor([1, 2, 3, 4])
    return Recorder(), x, t, torch.tensor([0, 1, 2, 3])


def test_w1_is_conditional_and_w0_unconditional(setup):
    net, x, t, y = setup
    null = torch.full((4,), 10)
    torch.testing.assert_close(guided(net, y, null, 1.0)(x, t), net(x, t, y))
    torch.testing.assert_close(guided(net, y, null, 0.0)(x, t), net(x, t, torch.full((4,), 10)))


def test_guided_formula_in_one_batched_forward(setup):
    net, x, t, y = setup
    w = 3.0
    cond, uncond = net(x, t, y), net(x, t, torch.full((4,), 10))
    net.calls = 0
    out = guided(net, y, torch.full((4,), 10), w)(x, t)
    assert net.calls == 1
    torch.testing.assert_close(out, uncond + w * (cond - uncond))


class Weaker(Recorder):
    """The same toy network, shrunk: a 'bad version' of it."""

    def forward(self, x, t, cond):
        return 0.5 * super().forward(x, t, cond)


def test_autoguidance_formula_and_its_identities(setup):
    """out_g + w (out - out_g): w = 1 is the model, w = 0 the guide; a model guided by
    itself is the model at any w, bit for bit (the identity guide)."""
    from diffkit.samplers.guidance import autoguided

    net, x, t, y = setup
    weak = Weaker()
    main, bad = net(x, t, y), weak(x, t, y)
    torch.testing.assert_close(autoguided(net, weak, y, 2.5)(x, t), bad + 2.5 * (main - bad))
    assert torch.equal(autoguided(net, weak, y, 1.0)(x, t), main)
    torch.testing.assert_close(autoguided(net, weak, y, 0.0)(x, t), bad)
    for w in (0.0, 1.7, 4.0):
        assert torch.equal(autoguided(net, net, y, w)(x, t), main)
    # no condition: an unconditional model is guided alike
    uncond = lambda x, t, c: x * 2.0  # noqa: E731
    weak_u = lambda x, t, c: x  # noqa: E731
    torch.testing.assert_close(autoguided(uncond, weak_u, None, 3.0)(x, t), x + 3.0 * x)


def test_a_learned_variance_comes_from_the_model():
    from diffkit.samplers.guidance import autoguided

    x, t = torch.randn(2, 1, 4, 4), torch.tensor([5, 6])
    net = lambda x, t, c: torch.cat([x * 2, torch.ones_like(x)], 1)  # noqa: E731
    weak = lambda x, t, c: torch.cat([x, torch.zeros_like(x)], 1)  # noqa: E731
    out = autoguided(net, weak, None, 2.0)(x, t)
    torch.testing.assert_close(out[:, :1], x + 2.0 * x)
    assert torch.equal(out[:, 1:], torch.ones_like(x))


@pytest.mark.parametrize("kind", ["cfg", "autoguidance"])
def test_a_guidance_interval_guides_inside_the_band_only(setup, kind):
    """Rows whose time is outside the band get the model's own (conditional) output; a call
    with no row inside costs one evaluation of the model and none of its partner."""
    from diffkit.samplers.guidance import autoguided

    net, x, t, y = setup
    null, w = torch.full((4,), 10), 2.5
    weak = Recorder()

    def make(band):
        if kind == "cfg":
            return guided(net, y, null, w, band)
        return autoguided(net, lambda x, t, c: 0.5 * weak(x, t, c), y, w, band)

    everywhere, alone = make(None)(x, t), net(x, t, y)
    torch.testing.assert_close(make(lambda t: t > 0)(x, t), everywhere)
    net.calls = weak.calls = 0
    torch.testing.assert_close(make(lambda t: t > 9)(x, t), alone)
    assert net.calls == 1 and weak.calls == 0
    mixed = make(lambda t: t >= 3)(x, t)
    torch.testing.assert_close(mixed[:2], alone[:2])
    torch.testing.assert_close(mixed[2:], everywhere[2:])


def test_each_family_reads_sigma_from_its_own_time():
    from diffkit.methods.ddpm import DDPMPipeline
    from diffkit.methods.flow import FlowPipeline
    from diffkit.models.contract import DDPMModel, FlowModel
    from diffkit.schedules import make_schedule

    sched = make_schedule("linear")
    ddpm = DDPMPipeline(DDPMModel(net=None, sample_shape=(2,), schedule=sched), torch.device("cpu"))
    ab = sched.alphas_cumprod[torch.tensor([0, 500, 999])]
    torch.testing.assert_close(ddpm.noise_level(torch.tensor([0, 500, 999])),
                               ((1 - ab) / ab).sqrt())  # fmt: skip
    flow = FlowPipeline(FlowModel(net=None, sample_shape=(2,)), torch.device("cpu"))
    sigma = flow.noise_level(torch.tensor([0.0, 250.0, 500.0, 1000.0]))  # time_scale 1000
    assert sigma[0] == float("inf") and sigma[-1] == 0
    torch.testing.assert_close(sigma[1:3], torch.tensor([3.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="0 <= lo < hi"):
        flow.banded(2.0, 1.0)
