"""Multistep consistency sampling on Gaussian data, where the consistency function is
known in closed form: the probability-flow ODE of N(mu, s^2) data keeps each path's
standardised position z = (x_t - m_t) / sigma_t, so f(x_t, t) = mu + s z on every path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from diffkit.methods.ddpm import DDPMPipeline
from diffkit.methods.flow import FlowPipeline
from diffkit.models.contract import DDPMModel, FlowModel
from diffkit.schedules import DDPMSchedule, make_schedule

MU = torch.tensor([1.5, -0.5], dtype=torch.float64)
STD = torch.tensor([0.5, 0.2], dtype=torch.float64)
N = 20_000


class GaussianDDPM(nn.Module):
    """An x0-predicting DDPM network of N(MU, STD^2) data: the consistency function
    (``exact``) or the posterior mean E[x0 | x_t] a diffusion model learns."""

    def __init__(self, schedule: DDPMSchedule, exact: bool):
        super().__init__()
        self.ab, self.exact = schedule.alphas_cumprod, exact

    def forward(self, x, t, labels=None):
        a = self.ab[t.long()].to(x.dtype).reshape(-1, 1)
        var = a * STD**2 + 1 - a  # Var x_t, per dimension
        if self.exact:
            return MU + STD * (x - a.sqrt() * MU) / var.sqrt()
        return MU + a.sqrt() * STD**2 * (x - a.sqrt() * MU) / var


class GaussianFlow(nn.Module):
    """A rectified-flow network of N(MU, STD^2) data (noise at t = 0): the velocity whose
    one Euler step to t = 1 is the consistency function (``exact``), or the marginal
    velocity E[x1 - x0 | x_t] a flow learns."""

    def __init__(self, exact: bool):
        super().__init__()
        self.exact = exact

    def forward(self, x, t, labels=None):
        t = (t / 1000).to(x.dtype).reshape(-1, 1)
        var = t**2 * STD**2 + (1 - t) ** 2
        if self.exact:
            end = MU + STD * (x - t * MU) / var.sqrt()
        else:
            end = MU + t * STD**2 * (x - t * MU) / var
        start = (x - t * end) / (1 - t)  # the noise of x_t = t end + (1 - t) start
        return end - start if self.exact else end - (1 - t) * (x - t * MU) / var


def pipeline(family: str, exact: bool):
    if family == "ddpm":
        sched = make_schedule("linear")
        model = DDPMModel(net=GaussianDDPM(sched, exact), sample_shape=(2,), schedule=sched,
                          prediction="x0", clip=False)  # fmt: skip
        return DDPMPipeline(model, torch.device("cpu"))
    return FlowPipeline(FlowModel(net=GaussianFlow(exact), sample_shape=(2,)), torch.device("cpu"))


@pytest.mark.parametrize("family", ["ddpm", "flow"])
@pytest.mark.parametrize("steps", [1, 2, 4])
def test_the_consistency_function_samples_the_data_in_any_number_of_steps(family, steps):
    pipe = pipeline(family, exact=True)
    noise = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, nfe = pipe.generate(noise, "consistency", steps,
                           generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert nfe == steps
    torch.testing.assert_close(x.mean(0), MU, atol=0.02, rtol=0)
    torch.testing.assert_close(x.std(0), STD, rtol=0.03, atol=0)


@pytest.mark.parametrize("family", ["ddpm", "flow"])
def test_a_diffusion_models_denoiser_in_one_jump_shrinks_the_spread(family):
    """The posterior mean is not the consistency function: at pure noise it is the data
    mean, so one jump collapses the samples (what distillation has to fix)."""
    pipe = pipeline(family, exact=False)
    noise = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, _ = pipe.generate(noise, "consistency", 1)
    torch.testing.assert_close(x.mean(0), MU, atol=0.02, rtol=0)
    assert torch.all(x.std(0) < 0.2 * STD)
