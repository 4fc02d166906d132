"""DPM-Solver++(3M) on Gaussian data, whose exact denoiser and probability-flow solution are
closed forms, and its steering invariants (as DPM-Solver++(2M)'s in test_steering)."""

from __future__ import annotations

import pytest
import torch

from diffkit.samplers import ddim_sample, dpm_solver_pp_2m, dpm_solver_pp_3m
from diffkit.schedules import make_schedule, spaced_timesteps
from tests.samplers.test_gaussian import MU, STD, exact_denoiser
from tests.samplers.test_steering import STEPS, correlated_denoiser, recorder


def exact_states(sched, ts, x):
    """The probability-flow ODE of N(MU, STD^2) keeps z = (x - a MU) / sqrt(a^2 STD^2 + s^2):
    the exact state at each of ``ts`` of the trajectory through ``x`` at ``ts[0]``."""
    ab = sched.alphas_cumprod[ts]
    z = (x - ab[0].sqrt() * MU) / (ab[0] * STD**2 + 1 - ab[0]).sqrt()
    return [a.sqrt() * MU + (a * STD**2 + 1 - a).sqrt() * z for a in ab]


def one_step_errors(fn, sched, ts, x) -> list[float]:
    """Each step's error from the exact state, the history exact too: a steering callback
    puts the closed-form state back after every step but the last (x = its x0, alike for
    every DPM-Solver)."""
    exact, errors = exact_states(sched, ts, x), []

    def reset(i, x, x0):
        if i + 1 < len(ts):
            errors.append(float((x - exact[i + 1]).abs().max()))
            return exact[i + 1]

    fn(exact_denoiser(sched), x, ts, sched, callback=reset)
    return errors


@pytest.fixture(scope="module")
def x():
    return torch.randn(1024, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_3m_steps_are_more_accurate_than_2m_steps(schedule, x):
    """Summed over a trailing grid, 3M's one-step errors are below 2M's at every step count,
    and fall as the steps grow. (Single steps can lose: the long last steps of a short grid
    change their ratio abruptly, which a third-order extrapolation feels most.)"""
    sched = make_schedule(schedule)
    total = {}
    for steps in (10, 20, 40):
        ts = spaced_timesteps(1000, steps, "trailing")
        for name, fn in (("2m", dpm_solver_pp_2m), ("3m", dpm_solver_pp_3m)):
            errors = one_step_errors(fn, sched, ts, x)
            assert len(errors) == steps - 1
            total[name, steps] = sum(errors)
        assert total["3m", steps] < total["2m", steps]
    assert total["3m", 40] < total["3m", 20] < total["3m", 10]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [10, 20])
def test_few_steps_land_near_the_exact_flow(schedule, steps, x):
    """End to end, against the exact flow to ``ts[-1]`` and the exact x0 there (the last step
    of every DPM-Solver): a small fraction of DDIM's error at 10 and 20 steps."""
    sched = make_schedule(schedule)
    ts = spaced_timesteps(1000, steps, "trailing")
    den = exact_denoiser(sched)
    last = torch.full((x.shape[0],), int(ts[-1]))
    want = den(exact_states(sched, ts, x)[-1], last)[1]
    err3 = (dpm_solver_pp_3m(den, x, ts, sched) - want).abs().mean()
    err_ddim = (ddim_sample(den, x, ts, sched) - want).abs().mean()
    assert err3 < 0.2 * err_ddim and err3 < 5e-3


def test_first_two_steps_are_ddim_and_2m_and_2m_differs_after(x):
    """With one x0 prediction 3M is DDIM, with two it is 2M; from the third step on it is
    its own."""
    sched = make_schedule("linear")
    den = exact_denoiser(sched)
    for steps in (12, 16):
        ts = spaced_timesteps(1000, steps, "trailing")
        seen = {}
        for name, fn in (("3m", dpm_solver_pp_3m), ("2m", dpm_solver_pp_2m), ("d", ddim_sample)):
            fn(den, x, ts, sched, callback=lambda i, x, x0, n=name, s=seen: s.setdefault((n, i), x))
        torch.testing.assert_close(seen["3m", 0], seen["d", 0], atol=1e-10, rtol=0)
        assert torch.equal(seen["3m", 1], seen["2m", 1])
        assert not torch.allclose(seen["3m", 2], seen["2m", 2], atol=1e-8, rtol=0)


# Steering, as DPM-Solver++(2M)'s (tests/samplers/test_steering.py).


@pytest.fixture(scope="module")
def sched():
    return make_schedule("linear", 1000)


@pytest.fixture(scope="module")
def ts():
    return spaced_timesteps(1000, STEPS, "trailing")


@pytest.fixture
def xc():
    return torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def test_identity_callback_and_start_zero_are_bit_identical(sched, ts, xc):
    den = correlated_denoiser(sched)
    plain = dpm_solver_pp_3m(den, xc, ts, sched)
    assert torch.equal(dpm_solver_pp_3m(den, xc, ts, sched, start=0), plain)
    assert torch.equal(dpm_solver_pp_3m(den, xc, ts, sched, callback=lambda i, x, x0: x), plain)
    assert torch.equal(dpm_solver_pp_3m(den, xc, ts, sched, callback=lambda i, x, x0: None), plain)


def test_resumes_with_a_first_then_second_order_step(sched, ts, xc):
    """A run from start > 0 carries no x0s: its first step is DDIM's and its second 2M's.
    Hence it equals a full run over ``ts[start:]`` (both under 15 steps) bit for bit, and
    differs (slightly) from the tail of the full run."""
    den = correlated_denoiser(sched)
    k, seen = 3, {}
    full = dpm_solver_pp_3m(den, xc, ts, sched, callback=recorder(seen))
    got = {}

    def keep(tag):
        return lambda i, x, x0: got.setdefault((tag, i), x)

    resumed = dpm_solver_pp_3m(den, seen[k], ts, sched, start=k + 1, callback=keep("3m"))
    ddim_sample(den, seen[k], ts, sched, start=k + 1, callback=keep("ddim"))
    dpm_solver_pp_2m(den, seen[k], ts, sched, start=k + 1, callback=keep("2m"))
    assert min(i for _, i in got) == k + 1
    torch.testing.assert_close(got["3m", k + 1], got["ddim", k + 1], atol=1e-10, rtol=0)
    assert torch.equal(got["3m", k + 2], got["2m", k + 2])
    assert not torch.equal(got["3m", k + 1], seen[k + 1])  # the full run's step is 3M
    assert torch.equal(resumed, dpm_solver_pp_3m(den, seen[k], ts[k + 1 :], sched))
    assert not torch.equal(resumed, full)
    torch.testing.assert_close(resumed, full, atol=0.05, rtol=0)


def test_pasted_region_stays_pasted(sched, ts, xc):
    den = correlated_denoiser(sched)
    known = torch.full((xc.shape[0],), 0.75, dtype=xc.dtype)
    steps = []

    def paste(i, x, x0):
        steps.append(i)
        x = x.clone()
        x[:, 0] = known
        return x

    out = dpm_solver_pp_3m(den, xc, ts, sched, callback=paste)
    assert steps == list(range(STEPS))
    assert torch.equal(out[:, 0], known)
    free = dpm_solver_pp_3m(den, xc, ts, sched)
    assert not torch.allclose(out[:, 1], free[:, 1], atol=1e-3)  # coupled: dim 1 followed


@pytest.mark.parametrize("start", [-1, STEPS])
def test_start_outside_the_grid_is_refused(start, sched, ts, xc):
    with pytest.raises(ValueError, match="outside timesteps"):
        dpm_solver_pp_3m(correlated_denoiser(sched), xc, ts, sched, start=start)
