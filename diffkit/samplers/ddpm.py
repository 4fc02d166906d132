"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), on any descending timestep grid.

For a sub-sequence of timesteps the betas are respaced (Nichol & Dhariwal 2021, Sec. 4):
``beta_i = 1 - abar(tau_i) / abar(tau_{i+1})``, so 1000 steps is exactly Algorithm 2.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from diffkit.samplers.common import Denoiser, StepCallback, prev_alpha_bars
from diffkit.samplers.ode import check_start, steered
from diffkit.samplers.registry import sampler
from diffkit.schedules import DDPMSchedule
from diffkit.schedules.ddpm import posterior_coefficients

Variance = Literal["fixed_small", "fixed_large", "learned_range"]
"""DDPM Sec. 3.2's two extremes, or the network's interpolation between them."""

LOG_VAR_FLOOR = 1e-20  # tilde beta is 0 on the last step; diffusers floors it the same way


def learned_std(v: Tensor, tilde_beta: float, beta: float) -> Tensor:
    """The reverse-step standard deviation of a network that learned its variance, as a
    pure function of the step's (abar_t, abar_t') through ``tilde_beta`` and ``beta``:
    log sigma^2 = f log beta + (1 - f) log tilde_beta with f = (v + 1) / 2 (Nichol &
    Dhariwal 2021, Eq. 15; v in [-1, 1] per pixel)."""
    frac = (v + 1) / 2
    log_var = frac * math.log(beta) + (1 - frac) * math.log(max(tilde_beta, LOG_VAR_FLOOR))
    return torch.exp(0.5 * log_var)


@sampler("ddpm", family="ddpm", calls_per_step=1, stochastic=True, options=("spacing", "variance"),
         summary="ancestral DDPM (Ho et al. 2020)", order=10, whole_grid=True)  # fmt: skip
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
    start: int = 0,
) -> Tensor:
    """Run the reverse chain from ``x`` (B, ...), the state at ``timesteps[start]`` (noise
    for ``start = 0``), over the rest of ``timesteps`` (S,) descending.

    ``fixed_small`` uses the posterior variance \\tilde\\beta (DDPM Eq. 7), ``fixed_large``
    uses beta itself; both are the two extremes discussed in DDPM Sec. 3.2;
    ``learned_range`` interpolates between them per pixel with the network's v
    (:func:`learned_std`; the denoiser must return it). Step ``i`` goes
    from ``timesteps[i]`` to ``timesteps[i + 1]`` whatever ``start``, drawing one noise
    (none on the last step): given the generator state a full run has after step
    ``start - 1``, a run from ``start`` reproduces that run's tail exactly. ``callback`` may
    steer (:data:`~diffkit.samplers.common.StepCallback`).
    """
    ab_all, ab_prev_all = prev_alpha_bars(schedule, timesteps)
    ts = timesteps.tolist()
    for i in range(check_start(start, len(ts), "timesteps"), len(ts)):
        # (1) respaced beta_i = 1 - abar_t / abar_prev and the posterior's coefficients
        c0, ct, tilde_beta, beta = posterior_coefficients(ab_all[i].item(), ab_prev_all[i].item())
        tt = torch.full((x.shape[0],), ts[i], device=x.device, dtype=torch.long)
        out = model(x, tt)  # (2) x0_hat(x_t, t), and v if the network learned it
        x0 = out[1]
        mean = c0 * x0 + ct * x  # (3) posterior mean, DDPM Eq. 7: mu = c0 x0_hat + ct x_t
        if i < len(ts) - 1:  # (4) x_prev = mu + sigma z, sigma^2 = tilde beta, beta or learned
            if variance == "learned_range":
                if len(out) < 3:
                    raise ValueError("learned_range variance needs a network that learned it")
                std: Tensor | float = learned_std(out[2], tilde_beta, beta)
            else:
                std = (tilde_beta if variance == "fixed_small" else beta) ** 0.5
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = mean + std * noise
        else:  # (4') the last step returns the mean, no noise
            x = mean
        if callback is not None:  # (5) steer: x_prev <- callback(i, x_prev, x0_hat)
            x = steered(x, callback(i, x, x0))
    return x
