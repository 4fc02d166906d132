"""UniPC on Gaussian data, whose exact denoiser and probability-flow ODE solution are known
in closed form, and the steering invariants DPM-Solver++(2M) keeps."""

from __future__ import annotations

import pytest
import torch

from diffkit.samplers import ddim_sample, dpm_solver_pp_2m, unipc_sample
from diffkit.schedules import make_schedule, spaced_timesteps
from tests.samplers.test_gaussian import MU, STD, exact_denoiser
from tests.samplers.test_steering import correlated_denoiser, recorder


@pytest.fixture(scope="module")
def sched():
    return make_schedule("linear", 1000)


@pytest.fixture
def x():
    return torch.randn(512, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def exact_state(sched, x_T, t_from, t):
    """The ODE keeps z = (x - a MU) / sqrt(a^2 STD^2 + s^2): x at ``t`` from x_T at ``t_from``."""
    ab0, ab = sched.alphas_cumprod[t_from], sched.alphas_cumprod[t]
    z = (x_T - ab0.sqrt() * MU) / (ab0 * STD**2 + 1 - ab0).sqrt()
    return ab.sqrt() * MU + (ab * STD**2 + 1 - ab).sqrt() * z


def errors(sched, x, steps):
    """Mean abs error of DDIM, 2M and UniPC on a trailing grid: at t = 499 (the state after
    step S/2 - 1; UniPC's is its predictor's) and at the end, against the exact x0 at the
    exact state at ``ts[-1]`` (every sampler's last step is x0_hat at its state there)."""
    ts = spaced_timesteps(1000, steps, "trailing")
    den, k = exact_denoiser(sched), steps // 2 - 1
    mid = exact_state(sched, x, ts[0], ts[k + 1])
    end = den(exact_state(sched, x, ts[0], ts[-1]), ts[-1:].expand(len(x)))[1]
    out = {}
    for name, fn in (("ddim", ddim_sample), ("2m", dpm_solver_pp_2m), ("unipc", unipc_sample)):
        seen = {}
        last = fn(den, x, ts, sched, callback=recorder(seen))
        out[name] = ((seen[k] - mid).abs().mean().item(), (last - end).abs().mean().item())
    return out


def test_unipc_is_more_accurate_than_2m_and_converges_faster(sched, x):
    """Measured (linear schedule, mean abs error at t = 499 / at the end):
    steps  DDIM                2M                  UniPC
    5      9.3e-4 / 9.4e-3     7.5e-4 / 5.8e-3     6.9e-4 / 4.7e-3   (t = 599)
    10     1.4e-3 / 1.9e-2     6.7e-4 / 4.3e-3     4.0e-4 / 2.3e-3
    20     7.1e-4 / 2.1e-2     1.9e-4 / 3.1e-3     6.6e-5 / 3.4e-3
    40     3.6e-4 / 1.6e-2     5.1e-5 / 3.4e-3     9.4e-6 / 2.9e-3
    Mid-way the orders show: DDIM halves per doubling, 2M quarters, UniPC falls ~7x. The
    end error stalls for all three: on a trailing grid the last intervals (2T/S -> T/S)
    keep h ~ 0.35 in lambda whatever S, and UniPC's last interval is uncorrected (its final
    x0 is taken at the predicted point, as in diffusers); there UniPC is ahead at 5 and 10
    steps, not at 20 (3.4e-3 against 3.1e-3)."""
    err = {steps: errors(sched, x, steps) for steps in (10, 20, 40)}
    for steps in (10, 20, 40):
        assert err[steps]["unipc"][0] < err[steps]["2m"][0] < err[steps]["ddim"][0]
    assert err[40]["unipc"][0] / err[10]["unipc"][0] < err[40]["2m"][0] / err[10]["2m"][0] / 3
    assert err[10]["unipc"][1] < 0.6 * err[10]["2m"][1]


def test_first_step_is_ddim_and_unipc_is_2m_plus_the_corrector(sched, x):
    """Step 0 has no history: UniP-1 = DDIM's step. The corrector changes the state from
    step 1 on (2M's state after step 0 equals UniPC's before its first correction)."""
    den, ts = exact_denoiser(sched), spaced_timesteps(1000, 8, "trailing")
    seen = {name: {} for name in ("ddim", "2m", "unipc")}
    ddim_sample(den, x, ts, sched, callback=recorder(seen["ddim"]))
    dpm_solver_pp_2m(den, x, ts, sched, callback=recorder(seen["2m"]))
    unipc_sample(den, x, ts, sched, callback=recorder(seen["unipc"]))
    torch.testing.assert_close(seen["unipc"][0], seen["ddim"][0], atol=1e-12, rtol=0)
    torch.testing.assert_close(seen["unipc"][0], seen["2m"][0], atol=1e-12, rtol=0)
    assert not torch.allclose(seen["unipc"][1], seen["2m"][1], atol=1e-6)


STEPS = 12


def test_identity_callback_and_start_zero_are_bit_identical(sched):
    den, ts = correlated_denoiser(sched), spaced_timesteps(1000, STEPS, "trailing")
    x = torch.randn(64, 2, dtype=torch.float64)
    plain = unipc_sample(den, x, ts, sched)
    assert torch.equal(unipc_sample(den, x, ts, sched, start=0), plain)
    assert torch.equal(unipc_sample(den, x, ts, sched, callback=lambda i, x, x0: None), plain)
    assert torch.equal(unipc_sample(den, x, ts, sched, callback=lambda i, x, x0: x), plain)


@pytest.mark.parametrize("k", [1, 4, STEPS - 2])
def test_a_run_from_start_is_a_full_run_over_the_tail(sched, k):
    """No carried history at ``start``: the first step is first order and uncorrected, so
    it equals a run over ``ts[start:]`` bit for bit and differs slightly from the tail of
    the full run."""
    den, ts = correlated_denoiser(sched), spaced_timesteps(1000, STEPS, "trailing")
    x, seen = torch.randn(64, 2, dtype=torch.float64), {}
    full = unipc_sample(den, x, ts, sched, callback=recorder(seen))
    resumed = unipc_sample(den, seen[k - 1], ts, sched, start=k)
    assert torch.equal(resumed, unipc_sample(den, seen[k - 1], ts[k:], sched))
    assert not torch.equal(resumed, full)
    if k < STEPS // 2:  # near the end a first-order restart costs more
        torch.testing.assert_close(resumed, full, atol=0.05, rtol=0)


def test_a_pasted_region_survives_the_corrector(sched):
    """What a callback pastes in after every step is there at the end, and the coupled free
    dimension follows it."""
    den, ts = correlated_denoiser(sched), spaced_timesteps(1000, STEPS, "trailing")
    x = torch.randn(64, 2, dtype=torch.float64)
    known = 0.75

    def paste(i, x, x0):
        x = x.clone()
        x[:, 0] = known
        return x

    out = unipc_sample(den, x, ts, sched, callback=paste)
    assert torch.all(out[:, 0] == known)
    free = unipc_sample(den, x, ts, sched)
    assert not torch.allclose(out[:, 1], free[:, 1], atol=1e-3)


@pytest.mark.parametrize("start", [-1, STEPS])
def test_start_outside_the_grid_is_refused(sched, start):
    den, ts = correlated_denoiser(sched), spaced_timesteps(1000, STEPS, "trailing")
    with pytest.raises(ValueError, match="outside timesteps"):
        unipc_sample(den, torch.randn(4, 2, dtype=torch.float64), ts, sched, start=start)
