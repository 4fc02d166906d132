"""The rectified-flow loss: interpolation, target, time sampling, pairs and distillation."""

from __future__ import annotations

import torch

from diffkit.objectives.flow import FlowObjective
from diffkit.samplers.common import NET_TIME_SCALE
from diffkit.schedules.flow import flow_time_grid, sample_flow_time


class Spy(torch.nn.Module):
    """Records what it sees; predicts ``self.answer(x_t, t)``."""

    def __init__(self, answer):
        super().__init__()
        self.answer, self.seen = answer, []

    def forward(self, x, t, cond=None):
        self.seen.append((x, t / NET_TIME_SCALE, cond))
        return self.answer(x, t / NET_TIME_SCALE)


def test_paired_loss_is_zero_for_the_straight_line_velocity():
    g = torch.Generator().manual_seed(0)
    noise, data = torch.randn(8, 3), torch.randn(8, 3)
    pairs = torch.stack([noise, data], dim=1)
    # With every pair equal to the first, the target x1 - x0 is one constant vector.
    same = pairs[:1].expand(8, -1, -1)
    target = data[0] - noise[0]
    net = Spy(lambda x, t: target.expand_as(x))
    assert FlowObjective(paired=True)(net, same, None, g) == 0
    # x_t lies on the segment at the sampled t.
    x, t, _ = net.seen[0]
    tb = t[:, None]
    assert torch.allclose(x, tb * data[0] + (1 - tb) * noise[0], atol=1e-6)


def test_unpaired_loss_draws_fresh_noise_and_regresses_x1_minus_x0():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(16, 4)
    net = Spy(lambda x, t: torch.zeros_like(x))
    loss = FlowObjective()(net, data, None, g)
    x, t, _ = net.seen[0]
    tb = t[:, None]
    noise = (x - tb * data) / (1 - tb)  # invert the interpolation
    assert torch.allclose(loss, (data - noise).pow(2).mean(), rtol=1e-4)


def test_time_sampling_and_distillation_grid():
    g = torch.Generator().manual_seed(0)
    u = sample_flow_time("uniform", 20000, generator=g)
    ln = sample_flow_time("logit_normal", 20000, generator=g)
    assert float(u.min()) >= 0 and float(u.max()) <= 1 and abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float(ln.median()) - 0.5) < 0.02
    assert float(ln.std()) < float(u.std())  # concentrated in the middle
    grid = sample_flow_time("uniform", 1000, generator=g, grid=4)
    assert set(grid.tolist()) == {0.0, 0.25, 0.5, 0.75}
    one = Spy(lambda x, t: torch.zeros_like(x))
    FlowObjective(distill_steps=1, paired=True)(one, torch.randn(8, 2, 3), None, g)
    assert torch.all(one.seen[0][1] == 0)  # one-step distillation trains at t = 0 only
    assert torch.equal(flow_time_grid(4), torch.tensor([0, 0.25, 0.5, 0.75, 1.0]).double())


def test_conditional_flow_drops_labels_to_the_null_class():
    g = torch.Generator().manual_seed(0)
    net = Spy(lambda x, t: torch.zeros_like(x))
    labels = torch.zeros(4000, dtype=torch.long)
    FlowObjective(num_classes=10, cond_drop=0.25)(net, torch.randn(4000, 2), labels, g)
    dropped = (net.seen[0][2] == 10).float().mean()
    assert abs(float(dropped) - 0.25) < 0.03
