"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), on any descending timestep grid.

For a sub-sequence of timesteps the betas are respaced (Nichol & Dhariwal 2021, Sec. 4):
``beta_i = 1 - abar(tau_i) / abar(tau_{i+1})``, so 1000 steps is exactly Algorithm 2.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from diffkit.samplers.common import Denoiser, StepCallback, prev_alpha_bars
from diffkit.schedules import DDPMSchedule

Variance = Literal["fixed_small", "fixed_large"]


@torch.no_grad()
def ddpm_sample(
    model: Denoiser,
    x: Tensor,
    timesteps: Tensor,
    schedule: DDPMSchedule,
    *,
    variance: Variance = "fixed_small",
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Run the reverse chain from ``x`` (noise, (B, ...)) over ``timesteps`` (S,) descending.

    ``fixed_small`` uses the posterior variance \\tilde\\beta (DDPM Eq. 7), ``fixed_large``
    uses beta itself; both are the two extremes discussed in DDPM Sec. 3.2.
    """
    ab_all, ab_prev_all = prev_alpha_bars(schedule, timesteps)
    for i, t in enumerate(timesteps.tolist()):
        ab, ab_prev = ab_all[i].item(), ab_prev_all[i].item()
        beta = 1 - ab / ab_prev
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        _, x0 = model(x, tt)
        # Posterior mean, DDPM Eq. 7, with the respaced beta.
        c0 = ab_prev**0.5 * beta / (1 - ab)
        ct = (1 - beta) ** 0.5 * (1 - ab_prev) / (1 - ab)
        mean = c0 * x0 + ct * x
        if i < len(timesteps) - 1:
            var = beta * (1 - ab_prev) / (1 - ab) if variance == "fixed_small" else beta
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + var**0.5 * noise
        else:
            x = mean
        if callback is not None:
            callback(i, x, x0)
    return x
