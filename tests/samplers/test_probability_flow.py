"""A DDPM as a velocity field: Euler = DDIM, higher-order solvers and DPM-Solver++(2M)
converge to the exact probability-flow solution for Gaussian data."""

from __future__ import annotations

import pytest
import torch

from diffkit.samplers import ddim_sample, make_denoiser
from diffkit.samplers.dpm_solver import dpm_solver_pp_2m
from diffkit.samplers.ode import solve
from diffkit.samplers.probability_flow import (
    abar_of_flow_time,
    ddpm_flow_times,
    ddpm_velocity,
    flow_time,
    fractional_timestep,
    probability_flow_sample,
    to_flow_state,
)
from diffkit.schedules import make_schedule, spaced_timesteps

MU, SIGMA = 0.3, 0.5


def gaussian_eps_net(schedule):
    """The exact eps-prediction for data N(MU, SIGMA^2), at real-valued timesteps (abar
    interpolated in log abar, as :func:`fractional_timestep` inverts it)."""
    log_ab = schedule.alphas_cumprod.log()

    def net(x, t, cond=None):
        t = t.double().clamp(0, len(log_ab) - 1)
        lo = t.floor().long().clamp(max=len(log_ab) - 2)
        frac = t - lo
        ab = (log_ab[lo] * (1 - frac) + log_ab[lo + 1] * frac).exp()
        ab = ab.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        a, s = ab.sqrt(), (1 - ab).sqrt()
        x0 = MU + a * SIGMA**2 / (a**2 * SIGMA**2 + s**2) * (x - a * MU)
        return (x - a * x0) / s

    return net


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("linear", 1000)


def exact_flow(schedule, x_T: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE of Gaussian data is affine: it keeps the standardized
    coordinate z = (x - a MU) / sqrt(a^2 SIGMA^2 + s^2), so x_T lands at MU + SIGMA z."""
    ab = schedule.alphas_cumprod[-1]
    a, s = ab.sqrt(), (1 - ab).sqrt()
    return MU + SIGMA * (x_T - a * MU) / (a**2 * SIGMA**2 + s**2).sqrt()


def test_flow_time_round_trips(schedule):
    ab = schedule.alphas_cumprod
    tau = flow_time(ab)
    assert torch.all(tau[1:] < tau[:-1])  # noisier timestep -> smaller tau
    assert torch.allclose(abar_of_flow_time(tau), ab, rtol=1e-10)
    t = fractional_timestep(schedule, ab[[0, 17, 500, 999]])
    assert torch.allclose(t, torch.tensor([0.0, 17.0, 500.0, 999.0], dtype=t.dtype))
    x = torch.randn(5, 3, dtype=torch.float64)
    a, s = ab[100].sqrt(), (1 - ab[100]).sqrt()
    assert torch.allclose(to_flow_state(x, tau[100]), x / (a + s))


@pytest.mark.parametrize("steps", [1, 4, 20])
def test_euler_on_the_ddpm_velocity_is_ddim(schedule, steps: int):
    net = gaussian_eps_net(schedule)
    x = torch.randn(256, 2, dtype=torch.float64)
    ts = spaced_timesteps(1000, steps, "trailing")
    taus = ddpm_flow_times(schedule, ts)
    z, nfe = solve(
        "euler", ddpm_velocity(net, schedule, "eps", clip=False), to_flow_state(x, taus[0]), taus
    )
    ddim = ddim_sample(make_denoiser(net, schedule, "eps", clip=False), x, ts, schedule)
    assert nfe == steps and torch.allclose(z, ddim, atol=1e-9, rtol=1e-9)


def test_higher_order_solvers_beat_ddim_at_equal_steps(schedule):
    net = gaussian_eps_net(schedule)
    x = torch.randn(512, 2, dtype=torch.float64)
    exact = exact_flow(schedule, x)
    velocity = ddpm_velocity(net, schedule, "eps", clip=False)
    denoiser = make_denoiser(net, schedule, "eps", clip=False)
    err = {}
    for steps in (10, 20, 40):
        ts = spaced_timesteps(1000, steps, "trailing")
        taus = ddpm_flow_times(schedule, ts)
        z = to_flow_state(x, taus[0])
        for name in ("euler", "heun", "rk4"):
            out, _ = solve(name, velocity, z, taus)
            err[name, steps] = float((out - exact).abs().mean())
        out = dpm_solver_pp_2m(denoiser, x, ts, schedule)
        err["dpm++2m", steps] = float((out - exact).abs().mean())
    for steps in (10, 20, 40):
        assert err["heun", steps] < 0.2 * err["euler", steps]
        assert err["rk4", steps] < 0.2 * err["euler", steps]
        assert err["dpm++2m", steps] < err["euler", steps]
    # Error falls with steps for every solver; second order falls faster than first.
    for name in ("euler", "heun", "rk4", "dpm++2m"):
        assert err[name, 40] < err[name, 20] < err[name, 10]
    assert err["dpm++2m", 40] / err["dpm++2m", 10] < err["euler", 40] / err["euler", 10]


def test_dpm_solver_first_step_is_ddim(schedule):
    """With one x0 prediction DPM-Solver++ is the exact exponential integrator = DDIM."""
    net = gaussian_eps_net(schedule)
    x = torch.randn(64, 2, dtype=torch.float64)
    ts = spaced_timesteps(1000, 10, "trailing")
    denoiser = make_denoiser(net, schedule, "eps", clip=False)
    seen = {}
    dpm_solver_pp_2m(denoiser, x, ts, schedule, callback=lambda i, x, x0: seen.setdefault(i, x))
    ddim_sample(denoiser, x, ts, schedule, callback=lambda i, x, x0: seen.setdefault(("d", i), x))
    assert torch.allclose(seen[0], seen["d", 0], atol=1e-10)
    assert not torch.allclose(seen[3], seen["d", 3], atol=1e-6)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_velocity_is_the_same_whatever_the_parameterization(schedule, prediction):
    from diffkit.param import training_target

    eps_net = gaussian_eps_net(schedule)
    log_ab = schedule.alphas_cumprod.log()

    def net(x, t, cond=None):
        eps = eps_net(x, t)
        ab = log_ab[t.round().long()].exp().reshape(-1, 1).to(x.dtype)
        x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
        return training_target(prediction, x0, eps, ab)

    ts = spaced_timesteps(1000, 10, "trailing")
    taus = ddpm_flow_times(schedule, ts)[:-1]  # integer timesteps only
    z = torch.randn(32, 2, dtype=torch.float64)
    ref = ddpm_velocity(eps_net, schedule, "eps", clip=False)
    got = ddpm_velocity(net, schedule, prediction, clip=False)
    for tau in taus:
        t = tau.expand(32)
        assert torch.allclose(got(z, t), ref(z, t), atol=1e-6)


@pytest.mark.parametrize("solver", ["euler", "midpoint", "heun", "rk4", "dopri5"])
def test_probability_flow_sample_ends_with_the_ddim_step(schedule, solver):
    """The network is never asked about t below the grid's last timestep (s = 0 there); the
    last step is DDIM's, so Euler is DDIM and the higher orders still converge."""
    net = gaussian_eps_net(schedule)
    seen = []

    def spy(x, t, cond=None):
        seen.append(float(t.min()))
        return net(x, t)

    x = torch.randn(256, 2, dtype=torch.float64)
    ts = spaced_timesteps(1000, 10, "trailing")  # ends at t = 99
    velocity = ddpm_velocity(spy, schedule, "eps", clip=False)
    out, nfe = probability_flow_sample(solver, velocity, x, ts, schedule, rtol=1e-5, atol=1e-5)
    assert nfe == len(seen) and min(seen) >= 99 - 1e-6
    if solver != "dopri5":
        assert nfe == {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[solver] * 9 + 1
    ddim = ddim_sample(make_denoiser(net, schedule, "eps", clip=False), x, ts, schedule)
    if solver == "euler":
        assert torch.allclose(out, ddim, atol=1e-9)
    else:  # higher order up to t = 99, then the shared final step
        exact = exact_flow(schedule, x)
        assert (out - exact).abs().mean() < (ddim - exact).abs().mean()
