"""The contract between networks and samplers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from diffkit.param import Prediction, split_prediction, x0_to_eps
from diffkit.samplers.ode import Velocity
from diffkit.schedules import DDPMSchedule

Denoiser = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``(x_t: (B, ...), t: (B,) long) -> (eps, x0)``, both shaped like ``x_t``."""

StepCallback = Callable[[int, Tensor, Tensor], Tensor | None]
"""``callback(i, x, x0)`` after sampler step ``i``: ``x`` the new state (at
``timesteps[i + 1]``, clean data after the last step), ``x0`` the step's x0 prediction. A
returned Tensor replaces ``x`` for the following steps (inpainting: paste the known region,
noised to ``timesteps[i + 1]``); None keeps it."""


def make_denoiser(
    net: Callable[..., Tensor],
    schedule: DDPMSchedule,
    prediction: Prediction,
    *,
    clip: bool = True,
    cond: object = None,
) -> Denoiser:
    """Wrap a network ``net(x, t, cond)`` of any parameterization as a :data:`Denoiser`.

    With ``clip`` the predicted x0 is clamped to [-1, 1] and eps recomputed from it, so the
    two stay consistent (the data range of images).
    """

    @torch.no_grad()
    def denoise(xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        abar = schedule.alpha_bar(t, xt.ndim, xt.dtype)
        pred = net(xt, t, cond).to(xt.dtype)
        eps, x0 = split_prediction(pred, prediction, xt, abar)
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = x0_to_eps(x0, xt, abar)
        return eps, x0

    return denoise


def prev_alpha_bars(schedule: DDPMSchedule, timesteps: Tensor) -> tuple[Tensor, Tensor]:
    """\\bar\\alpha at each timestep and at the next (less noisy) one; 1 after the last. Always
    over the whole grid: a run from ``start`` takes the same steps as the tail of a full run."""
    ab = schedule.alphas_cumprod[timesteps.cpu()]
    ab_prev = torch.cat([ab[1:], ab.new_ones(1)])
    return ab, ab_prev


NET_TIME_SCALE = 1000.0
"""A flow network sees ``1000 t``: the same range of sinusoidal-embedding inputs as a DDPM
network sees its integer timesteps."""


def make_velocity(
    net: Callable[..., Tensor],
    *,
    cond: object = None,
    time_scale: float = NET_TIME_SCALE,
) -> Velocity:
    """Wrap a rectified-flow network ``net(x, time_scale * t, cond)`` as a velocity field
    ``v(x, t)`` (t in [0, 1], noise at 0)."""

    @torch.no_grad()
    def velocity(x: Tensor, t: Tensor) -> Tensor:
        return net(x, t.to(x.dtype) * time_scale, cond).to(x.dtype)

    return velocity
