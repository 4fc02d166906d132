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
