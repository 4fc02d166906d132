"""A DDPM denoiser seen as a rectified-flow velocity field, so the ODE solvers of
:mod:`diffkit.samplers.ode` sample eps-, x0- and v-prediction models too.

With ``x = a x_0 + s eps`` (``a = sqrt(abar)``, ``s = sqrt(1 - abar)``), rescale the state
and time as ``z = x / (a + s)`` and ``tau = a / (a + s)``. Then ``z = tau x_0 + (1 - tau)
eps`` is exactly the rectified-flow interpolation (noise at tau = 0, data at tau = 1), and
the probability-flow ODE of the diffusion becomes ``dz/dtau = E[x_0 - eps | z]``, which is
``x0_hat - eps_hat`` from the network. Euler steps on this field reproduce DDIM on the same
timestep grid exactly (both are exact for a locally constant (x0_hat, eps_hat)); Heun, RK4 or
an adaptive solver then give higher-order versions of DDIM.

Between the DDPM's integer timesteps the network is evaluated at a fractional timestep,
interpolated in log abar; the sinusoidal time embedding accepts real values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from diffkit.param import (
    Prediction,
    network_input,
    split_prediction,
    split_variance,
    x0_to_eps,
)
from diffkit.samplers.common import Clip, project_x0
from diffkit.samplers.ode import (
    OdeCallback,
    Velocity,
    check_start,
    check_unsteered,
    solve,
    steered,
)
from diffkit.samplers.registry import sampler_spec
from diffkit.schedules import DDPMSchedule
from diffkit.schedules.ddpm import interpolate_timestep


def flow_time(abar: Tensor) -> Tensor:
    """tau = a / (a + s) for abar (any shape)."""
    a, s = abar.sqrt(), (1 - abar).sqrt()
    return a / (a + s)


def abar_of_flow_time(tau: Tensor) -> Tensor:
    """Inverse of :func:`flow_time`: abar = tau^2 / (tau^2 + (1 - tau)^2)."""
    return tau**2 / (tau**2 + (1 - tau) ** 2)


def to_flow_state(x: Tensor, tau: Tensor) -> Tensor:
    """z = x / (a + s) = x * sqrt(tau^2 + (1 - tau)^2); tau broadcastable to x."""
    return x * (tau**2 + (1 - tau) ** 2).sqrt()


def ddpm_flow_times(schedule: DDPMSchedule, timesteps: Tensor) -> Tensor:
    """The flow-time grid ((S + 1,), float64, increasing) of a descending DDPM timestep grid
    ``timesteps`` (S,), ending at tau = 1 (abar = 1, clean data)."""
    taus = flow_time(schedule.alphas_cumprod[timesteps.cpu()])
    return torch.cat([taus, taus.new_ones(1)])


def fractional_timestep(schedule: DDPMSchedule, abar: Tensor) -> Tensor:
    """The real-valued timestep whose abar (linearly interpolated in log abar between the
    integer timesteps) is ``abar`` (B,); clamped to [0, T - 1]."""
    return interpolate_timestep(-schedule.alphas_cumprod.log().to(abar.device), abar)


def ddpm_velocity(
    net: Callable[..., Tensor],
    schedule: DDPMSchedule,
    prediction: Prediction,
    *,
    clip: Clip = True,
    cond: Tensor | None = None,
) -> Velocity:
    """The velocity ``v(z, tau) = x0_hat - eps_hat`` of a network ``net(x, t, cond)`` trained
    as a DDPM. ``tau`` outside the schedule's range is clamped to it (at tau = 1 the network
    sees t = 0). ``clip`` clamps (or thresholds) x0_hat as :func:`make_denoiser` does; a
    learned variance is dropped (an ODE has none)."""
    ab = schedule.alphas_cumprod
    lo, hi = float(flow_time(ab[-1])), float(flow_time(ab[0]))
    tables: dict[torch.device, Tensor] = {}  # -log abar per timestep, once per device

    def velocity(z: Tensor, tau: Tensor) -> Tensor:
        tau = tau.double().clamp(lo, hi)
        abar = abar_of_flow_time(tau)
        if abar.device not in tables:
            tables[abar.device] = -ab.log().to(abar.device)
        t = interpolate_timestep(tables[abar.device], abar)
        shape = (-1,) + (1,) * (z.ndim - 1)
        abar_b = abar.reshape(shape).to(z.dtype)
        x = z * (abar_b.sqrt() + (1 - abar_b).sqrt())  # z = x / (a + s)
        inp = network_input(prediction, x, abar_b)
        pred, _ = split_variance(net(inp, t.to(z.dtype), cond).to(z.dtype), x)
        eps, x0 = split_prediction(pred, prediction, x, abar_b)
        if clip is not False:
            x0 = project_x0(x0, clip)
            eps = x0_to_eps(x0, x, abar_b)
        return x0 - eps

    return velocity


@torch.no_grad()
def probability_flow_sample(
    solver: str,
    velocity: Velocity,
    x: Tensor,
    timesteps: Tensor,
    schedule: DDPMSchedule,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    on_step: Callable[[], None] | None = None,
    start: int = 0,
    callback: OdeCallback | None = None,
) -> tuple[Tensor, int]:
    """Sample a DDPM by integrating its probability-flow ODE from ``x``, the state at
    ``timesteps[start]`` (noise for ``start = 0``), over the rest of the descending grid
    ``timesteps`` (S,): ``(x_0, evaluations)``.

    ``solver`` runs from ``timesteps[start]`` to the last grid timestep; the final step to
    clean data (tau = 1, where s = 0) is a plain Euler step, i.e. the DDIM step that returns
    x0_hat, as in Karras et al. 2022, Alg. 1. A higher-order step would evaluate the network
    at s = 0, where its eps estimate (and, with clipping, eps recomputed as (x - a x0) / s)
    is meaningless. dopri5 takes its end points from the grid only.

    ``on_step()`` counts progress. ``callback(i, x)`` after step ``i`` (the final step is
    ``S - 1``) sees x in the DDPM's own coordinates, ``x = a x_0 + s eps`` at
    ``timesteps[i + 1]`` (clean data after the last step), as the DDPM samplers' callbacks
    do; a returned Tensor replaces it (mapped back to the flow state ``z``; returning the
    given tensor untouched changes nothing), None keeps it. dopri5 refuses ``start > 0`` and
    ``callback`` (ValueError).
    """
    check_start(start, timesteps.shape[0], "timesteps")
    if sampler_spec(solver).adaptive:
        check_unsteered(solver, start, callback)
    taus = ddpm_flow_times(schedule, timesteps)

    def steer(i: int, z: Tensor) -> Tensor | None:  # the callback, in x = z (a + s)
        tau = taus[i + 1].to(z.dtype)
        xi = z / (tau**2 + (1 - tau) ** 2).sqrt()
        version = xi._version  # PyTorch bumps it on every in-place edit
        out = callback(i, xi)  # type: ignore[misc]
        out = xi if out is None else out  # an in-place edit of xi steers too
        if out is xi and xi._version == version:
            return None  # untouched: keep z exactly, no round trip through x
        return to_flow_state(steered(xi, out), tau)

    hook = steer if callback is not None else None
    z = to_flow_state(x, taus[start].to(x.dtype))  # (1) z = x / (a + s) at tau_start
    nfe = 0
    if start < taus.shape[0] - 2:  # (2) solver steps tau_start -> tau_{S-1}
        z, nfe = solve(solver, velocity, z, taus[:-1], rtol=rtol, atol=atol, on_step=on_step,
                       start=start, callback=hook)  # fmt: skip
    last = taus[-2].to(x.dtype)  # (3) one Euler (= DDIM) step tau_{S-1} -> 1
    z = z + (1 - last) * velocity(z, last.expand(z.shape[0]))
    if on_step is not None:
        on_step()
    if hook is not None:
        z = steered(z, hook(taus.shape[0] - 2, z))
    return z, nfe + 1
