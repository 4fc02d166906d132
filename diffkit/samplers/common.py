"""The contract between networks and samplers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from diffkit.param import (
    Prediction,
    network_input,
    split_prediction,
    split_variance,
    x0_to_eps,
)
from diffkit.samplers.ode import Velocity
from diffkit.schedules import DDPMSchedule

Denoiser = Callable[[Tensor, Tensor], tuple[Tensor, ...]]
"""``(x_t: (B, ...), t: (B,) long) -> (eps, x0)``, both shaped like ``x_t``; a network
with a learned variance adds its interpolation weight v: ``(eps, x0, v)``. Samplers that
do not use v read the first two."""

StepCallback = Callable[[int, Tensor, Tensor], Tensor | None]
"""``callback(i, x, x0)`` after sampler step ``i``: ``x`` the new state (at
``timesteps[i + 1]``, clean data after the last step), ``x0`` the step's x0 prediction. A
returned Tensor replaces ``x`` for the following steps (inpainting: paste the known region,
noised to ``timesteps[i + 1]``); None keeps it."""


@dataclass(frozen=True)
class DynamicThreshold:
    """Imagen's dynamic thresholding (Saharia et al. 2022, Sec. 2.3) of a predicted x0:
    per image, s = the ``ratio`` quantile of ``|x0|`` over all pixels, clamped to
    [1, ``max_value``]; x0 <- clamp(x0, -s, s) / s. With s = 1 it is plain clipping; it
    pulls saturated pixels inwards at large guidance scales. The defaults are diffusers';
    DeepFloyd IF's scheduler config sets ratio 0.95 and max_value 1.5."""

    ratio: float = 0.995
    max_value: float = 1.0

    def __call__(self, x0: Tensor) -> Tensor:
        flat = x0.float().flatten(1)  # (B, C*H*W); quantile needs fp32 or fp64
        s = flat.abs().quantile(self.ratio, dim=1).clamp(1.0, self.max_value)  # (B,)
        s = s.view(-1, *([1] * (x0.ndim - 1)))  # (B, 1, 1, 1)
        return (flat.view(x0.shape).clamp(-s, s) / s).to(x0.dtype)


Clip = bool | Callable[[Tensor], Tensor]
"""How a predicted x0 is kept in the data range: True clamps to [-1, 1], False leaves it,
a callable (a :class:`DynamicThreshold`) maps it."""


def project_x0(x0: Tensor, clip: Clip) -> Tensor:
    if callable(clip):
        return clip(x0)
    return x0.clamp(-1, 1) if clip else x0


def make_denoiser(
    net: Callable[..., Tensor],
    schedule: DDPMSchedule,
    prediction: Prediction,
    *,
    clip: Clip = True,
    cond: object = None,
) -> Denoiser:
    """Wrap a network ``net(x, t, cond)`` of any parameterization as a :data:`Denoiser`.

    With ``clip`` the predicted x0 is clamped to [-1, 1] (or thresholded) and eps
    recomputed from it, so the two stay consistent (the data range of images). A learned
    variance (:func:`~diffkit.param.split_variance`) comes back as a third output.
    """

    @torch.no_grad()
    def denoise(xt: Tensor, t: Tensor) -> tuple[Tensor, ...]:
        abar = schedule.alpha_bar(t, xt.ndim, xt.dtype)
        inp = network_input(prediction, xt, abar)  # c_in x_t for edm, else x_t
        pred, v = split_variance(net(inp, t, cond).to(xt.dtype), xt)
        eps, x0 = split_prediction(pred, prediction, xt, abar)
        if clip is not False:
            x0 = project_x0(x0, clip)
            eps = x0_to_eps(x0, xt, abar)
        return (eps, x0) if v is None else (eps, x0, v)

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
