"""Multistep consistency sampling (Song et al. 2023, "Consistency Models", Algorithm 1).

A consistency model maps any point of an ODE path straight to its end, clean data. One
evaluation at pure noise is a sample; more steps alternate that jump with fresh noise at
the next, lower noise level of a grid, trading evaluations for quality. The sampler sees
a model only through two functions of the grid index, which each family supplies
(:meth:`~diffkit.methods.pipeline.Pipeline.integrate`): ``denoise(x, i)``, the model's
estimate of clean data from the state at grid point i, and ``renoise(x0, i, z)``, clean
data put back at grid point i with noise z. On a DDPM this is diffusers'
``LCMScheduler.step`` (Luo et al. 2023), boundary scalings included
(:func:`lcm_boundary`); on a flow, ``x_t = t x0 + (1 - t) z``.

Every model takes it; it suits the students of ``diffkit distill``, which learn exactly
this jump. On a plain diffusion model it is a poor sampler (each step forgets the last
state's noise).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from diffkit.samplers.ode import check_start, steered
from diffkit.samplers.registry import sampler

LCM_SIGMA_DATA = 0.5
LCM_TIMESTEP_SCALING = 10.0


def lcm_boundary(t: Tensor) -> tuple[Tensor, Tensor]:
    """``(c_skip, c_out)`` at DDPM timesteps ``t``: the consistency function
    ``f = c_skip x_t + c_out x0_hat`` is the identity at t = 0 and the model's x0 estimate
    elsewhere (Song et al. 2023, Appendix C, with ``sigma_data = 0.5`` and timesteps scaled
    by 10 as in latent consistency models and diffusers' LCMScheduler)."""
    s = t.double() * LCM_TIMESTEP_SCALING
    c_skip = LCM_SIGMA_DATA**2 / (s**2 + LCM_SIGMA_DATA**2)
    c_out = s / (s**2 + LCM_SIGMA_DATA**2).sqrt()
    return c_skip, c_out


@sampler("consistency", family="x0", calls_per_step=1, stochastic=True, steps=2,
         summary="multistep consistency sampling (Song et al. 2023): jump to clean data, "
                 "renoise, repeat; for distilled students", order=90)  # fmt: skip
@torch.no_grad()
def consistency_sample(
    denoise: Callable[[Tensor, int], Tensor],
    renoise: Callable[[Tensor, int, Tensor], Tensor],
    x: Tensor,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[int, Tensor], Tensor | None] | None = None,
    start: int = 0,
) -> Tensor:
    """From ``x`` (B, ...), the state at grid point ``start`` (0: pure noise), ``steps``
    grid points in all; returns clean samples. ``callback(i, x)`` after step i sees the
    state at grid point i + 1 (clean data after the last step) and may replace it."""
    for i in range(check_start(start, steps, "the grid"), steps):
        x0 = denoise(x, i)  # (1) f(x_{t_i}, t_i): the jump to clean data
        if i + 1 < steps:  # (2) x_{t_{i+1}} = a x0 + s z with fresh z ~ N(0, I)
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = renoise(x0, i + 1, z)
        else:
            x = x0
        if callback is not None:
            x = steered(x, callback(i, x))
    return x
