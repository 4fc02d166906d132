"""Samplers driven by the exact denoiser of Gaussian data land on that Gaussian."""

import pytest
import torch

from diffkit.samplers import ddim_sample, ddpm_sample, make_denoiser
from diffkit.schedules import make_schedule, spaced_timesteps

MU = torch.tensor([1.5, -0.5], dtype=torch.float64)
STD = torch.tensor([0.5, 0.2], dtype=torch.float64)
N = 20_000


def exact_denoiser(sched):
    """E[eps | x_t] for x0 ~ N(MU, STD^2): sqrt(1-a) (x_t - sqrt(a) MU) / (a STD^2 + 1 - a)."""

    def denoise(xt, t):
        a = sched.alpha_bar(t, xt.ndim, xt.dtype)
        eps = (1 - a).sqrt() * (xt - a.sqrt() * MU) / (a * STD**2 + 1 - a)
        return eps, (xt - (1 - a).sqrt() * eps) / a.sqrt()

    return denoise


def start_noise(sched, t_start, g):
    """A draw from the exact marginal q(x_T), so only the sampler's error remains."""
    a = sched.alphas_cumprod[t_start]
    z = torch.randn(N, 2, generator=g, dtype=torch.float64)
    return a.sqrt() * MU + (a * STD**2 + 1 - a).sqrt() * z


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize(
    ("sampler", "steps", "tol"),
    [("ddpm", 1000, 0.03), ("ddim", 1000, 0.02)],
)
def test_sampler_reaches_gaussian(schedule, sampler, steps, tol):
    sched = make_schedule(schedule)
    g = torch.Generator().manual_seed(1)
    ts = spaced_timesteps(1000, steps, "trailing")
    x = start_noise(sched, ts[0], g)
    if sampler == "ddpm":
        out = ddpm_sample(exact_denoiser(sched), x, ts, sched, generator=g)
    else:
        out = ddim_sample(exact_denoiser(sched), x, ts, sched, eta=0.0)
    torch.testing.assert_close(out.mean(0), MU, atol=0.02, rtol=0)
    torch.testing.assert_close(out.std(0), STD, rtol=tol, atol=0)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddim_error_shrinks_with_steps_mean_exact(schedule):
    """DDIM is a first-order solver of the probability-flow ODE: with the exact denoiser the
    mean is right at any step count and the spread error falls as steps grow."""
    sched = make_schedule(schedule)
    errors = []
    for steps in (10, 50, 200, 1000):
        g = torch.Generator().manual_seed(1)
        ts = spaced_timesteps(1000, steps, "trailing")
        out = ddim_sample(exact_denoiser(sched), start_noise(sched, ts[0], g), ts, sched)
        torch.testing.assert_close(out.mean(0), MU, atol=0.02, rtol=0)
        errors.append((out.std(0) / STD - 1).abs().max().item())
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 0.02


def test_ddpm_few_steps_mean_right_variance_low():
    """Respaced ancestral sampling with few steps keeps the mean; fixed-small variance omits
    the c0^2 Var[x0 | x_t] term of the true reverse step, so the spread comes out low."""
    sched = make_schedule("linear")
    g = torch.Generator().manual_seed(4)
    ts = spaced_timesteps(1000, 100)
    out = ddpm_sample(exact_denoiser(sched), start_noise(sched, ts[0], g), ts, sched, generator=g)
    torch.testing.assert_close(out.mean(0), MU, atol=0.03, rtol=0)
    assert torch.all(out.std(0) < STD) and torch.all(out.std(0) > 0.8 * STD)


def test_ddpm_fixed_large_also_reaches_gaussian():
    sched = make_schedule("linear")
    g = torch.Generator().manual_seed(2)
    ts = spaced_timesteps(1000, 1000)
    out = ddpm_sample(
        exact_denoiser(sched),
        start_noise(sched, 999, g),
        ts,
        sched,
        variance="fixed_large",
        generator=g,
    )
    torch.testing.assert_close(out.mean(0), MU, atol=0.03, rtol=0)
    torch.testing.assert_close(out.std(0), STD, rtol=0.08, atol=0)


def test_ddim_eta0_deterministic_and_eta1_not():
    sched = make_schedule("linear")
    ts = spaced_timesteps(1000, 20)
    x = torch.randn(64, 2, dtype=torch.float64)
    den = exact_denoiser(sched)
    a = ddim_sample(den, x, ts, sched, eta=0.0, generator=torch.Generator().manual_seed(1))
    b = ddim_sample(den, x, ts, sched, eta=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = ddim_sample(den, x, ts, sched, eta=1.0, generator=torch.Generator().manual_seed(1))
    d = ddim_sample(den, x, ts, sched, eta=1.0, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(c, d)


def test_ddim_eta1_is_stochastic_but_right():
    sched = make_schedule("linear")
    g = torch.Generator().manual_seed(3)
    ts = spaced_timesteps(1000, 1000)
    out = ddim_sample(
        exact_denoiser(sched), start_noise(sched, ts[0], g), ts, sched, eta=1.0, generator=g
    )
    torch.testing.assert_close(out.mean(0), MU, atol=0.03, rtol=0)
    torch.testing.assert_close(out.std(0), STD, rtol=0.04, atol=0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_make_denoiser_any_parameterization(prediction):
    """A network emitting the exact target of its parameterization gives the same denoiser."""
    from diffkit.param import training_target

    sched = make_schedule("linear")
    exact = exact_denoiser(sched)

    def net(xt, t, cond):
        eps, x0 = exact(xt, t)
        return training_target(prediction, x0, eps, sched.alpha_bar(t, xt.ndim, xt.dtype))

    den = make_denoiser(net, sched, prediction, clip=False)
    x = torch.randn(16, 2, dtype=torch.float64)
    t = torch.full((16,), 400)
    for got, want in zip(den(x, t), exact(x, t), strict=True):
        torch.testing.assert_close(got, want)
