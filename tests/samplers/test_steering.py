"""Steerable samplers: a part-way ``start`` and callbacks that replace the state.

Checked against invariants (the identity callback changes nothing; a full run split in two
is the same run; a pasted region stays pasted) and against the closed form of Gaussian
data (a DDIM run started part-way from the exact marginal q(x_t) lands on the data).
"""

from __future__ import annotations

import pytest
import torch

from diffkit.samplers import ddim_sample, ddpm_sample, dpm_solver_pp_2m
from diffkit.samplers.ode import solve, solve_fixed
from diffkit.samplers.probability_flow import ddpm_velocity, probability_flow_sample
from diffkit.schedules import make_schedule, spaced_timesteps
from diffkit.schedules.flow import flow_time_grid
from tests.samplers.test_gaussian import MU, STD, exact_denoiser, start_noise
from tests.samplers.test_ode import gaussian_velocity

STEPS = 12
SIGMA = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=torch.float64)  # correlated data


def correlated_denoiser(sched):
    """The exact denoiser of x0 ~ N(0, SIGMA): E[x0 | x_t] = a SIGMA (a^2 SIGMA + s^2 I)^-1
    x_t. Its dimensions are coupled, so steering one moves the other."""

    def denoise(xt, t):
        ab = sched.alphas_cumprod[t.cpu()].to(xt.dtype)
        a, s2 = ab.sqrt(), 1 - ab
        cov = a[:, None, None] ** 2 * SIGMA + s2[:, None, None] * torch.eye(2, dtype=xt.dtype)
        x0 = a[:, None] * torch.linalg.solve(cov, xt.unsqueeze(-1)).squeeze(-1) @ SIGMA
        return (xt - a[:, None] * x0) / s2[:, None].sqrt(), x0

    return denoise


def coupled_velocity(x, t):
    """A linear field mixing the two coordinates."""
    return gaussian_velocity(x, t) + 0.5 * x.flip(-1)


@pytest.fixture(scope="module")
def sched():
    return make_schedule("linear", 1000)


@pytest.fixture(scope="module")
def ts():
    return spaced_timesteps(1000, STEPS, "trailing")


@pytest.fixture
def x():
    return torch.randn(64, 2, dtype=torch.float64)


def recorder(seen: dict):
    """A callback (either signature) that keeps a copy of x after every step, steers not."""

    def record(i, x, *_):
        seen[i] = x.clone()

    return record


def ddpm_family(name, sched, den, **kw):
    """``run(x, ts, **more) -> x0`` for a DDPM-family sampler by name."""

    def run(x, ts, **more):
        kw_all = kw | more
        match name:
            case "ddpm":
                gen = kw_all.pop("generator", None) or torch.Generator().manual_seed(0)
                return ddpm_sample(den, x, ts, sched, generator=gen, **kw_all)
            case "ddim":
                return ddim_sample(den, x, ts, sched, **kw_all)
            case "dpm++2m":
                return dpm_solver_pp_2m(den, x, ts, sched, **kw_all)
            case "pf-euler" | "pf-heun" | "pf-rk4":
                velocity = ddpm_velocity(
                    lambda x, t, cond=None: _eps_net(den, sched, x, t), sched, "eps", clip=False
                )
                return probability_flow_sample(name[3:], velocity, x, ts, sched, **kw_all)[0]
        raise AssertionError(name)

    return run


def _eps_net(den, sched, x, t):
    """A denoiser as an eps-network at the nearest integer timestep (enough for invariants)."""
    return den(x, t.round().long().clamp(0, 999))[0]


DDPM_FAMILY = ["ddpm", "ddim", "dpm++2m", "pf-euler", "pf-heun", "pf-rk4"]
ODE_SOLVERS = ["euler", "heun", "rk4"]


# (a) The identity callback, and start = 0, change nothing.


@pytest.mark.parametrize("name", DDPM_FAMILY)
def test_identity_callback_and_start_zero_are_bit_identical(name, sched, ts, x):
    run = ddpm_family(name, sched, correlated_denoiser(sched))
    plain = run(x, ts)
    assert torch.equal(run(x, ts, start=0), plain)
    if name.startswith("pf-"):
        assert torch.equal(run(x, ts, callback=lambda i, x: x), plain)
        assert torch.equal(run(x, ts, callback=lambda i, x: None), plain)
    else:
        assert torch.equal(run(x, ts, callback=lambda i, x, x0: x), plain)
        assert torch.equal(run(x, ts, callback=lambda i, x, x0: None), plain)


@pytest.mark.parametrize("solver", ODE_SOLVERS)
def test_ode_identity_callback_and_start_zero_are_bit_identical(solver, x):
    times = flow_time_grid(STEPS)
    plain = solve_fixed(solver, coupled_velocity, x, times)
    assert torch.equal(solve_fixed(solver, coupled_velocity, x, times, start=0), plain)
    seen = []
    out = solve_fixed(solver, coupled_velocity, x, times, callback=lambda i, x: seen.append(i) or x)
    assert torch.equal(out, plain) and seen == list(range(STEPS))
    out, _ = solve(solver, coupled_velocity, x, times, callback=lambda i, x: x)
    assert torch.equal(out, plain)


# (b) A full run split at any step is the same run.


@pytest.mark.parametrize("name", ["ddim", "pf-euler", "pf-rk4"])
@pytest.mark.parametrize("k", [0, 4, STEPS - 2])
def test_deterministic_ddpm_samplers_resume_exactly(name, k, sched, ts, x):
    run = ddpm_family(name, sched, correlated_denoiser(sched))
    seen = {}
    full = run(x, ts, callback=recorder(seen))
    resumed = run(seen[k], ts, start=k + 1)
    if name == "ddim":
        assert torch.equal(resumed, full)
        # ... and equal to a fresh run over the tail of the grid: the same alpha-bar pairs.
        assert torch.equal(run(seen[k], ts[k + 1 :]), full)
    else:  # x -> z = x / (a + s) at the restart rounds once
        torch.testing.assert_close(resumed, full, atol=1e-12, rtol=0)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_resumes_exactly_with_the_generator_state(variance, sched, ts, x):
    """One noise per step but the last: a run from k + 1 with the generator state of the
    full run after step k reproduces it bit for bit."""
    den = correlated_denoiser(sched)
    k, gen, seen = 5, torch.Generator().manual_seed(3), {}

    def record(i, x, x0):
        seen[i] = (x.clone(), gen.get_state())

    full = ddpm_sample(den, x, ts, sched, variance=variance, generator=gen, callback=record)
    x_k, state = seen[k]
    resumed = ddpm_sample(den, x_k, ts, sched, variance=variance, start=k + 1,
                          generator=torch.Generator().set_state(state))  # fmt: skip
    assert torch.equal(resumed, full)


@pytest.mark.parametrize("solver", ODE_SOLVERS)
@pytest.mark.parametrize("k", [0, 5, STEPS - 1])
def test_ode_solvers_resume_exactly(solver, k, x):
    times = flow_time_grid(STEPS)
    seen = {}
    full, nfe_full = solve(solver, coupled_velocity, x, times, callback=recorder(seen))
    resumed, nfe = solve(solver, coupled_velocity, seen[k], times, start=k + 1)
    assert torch.equal(resumed, full)
    per_step = nfe_full // STEPS
    assert nfe == per_step * (STEPS - k - 1)


def test_ode_start_at_the_end_is_a_no_op(x):
    times = flow_time_grid(STEPS)
    assert solve_fixed("rk4", coupled_velocity, x, times, start=STEPS) is x


def test_dpm_solver_resumes_with_a_first_order_step(sched, ts, x):
    """DPM-Solver++(2M) carries the previous x0 prediction; a run from start > 0 has none,
    so its first step is DDIM's, as at the start of a full run. Hence it equals a full run
    over ``ts[start:]`` bit for bit, and differs (slightly) from the tail of the full run."""
    den = correlated_denoiser(sched)
    k, seen = 3, {}
    full = dpm_solver_pp_2m(den, x, ts, sched, callback=recorder(seen))
    first = {}

    def keep(tag):
        def first_step(i, x, x0):
            first.setdefault(tag, (i, x))

        return first_step

    resumed = dpm_solver_pp_2m(den, seen[k], ts, sched, start=k + 1, callback=keep("dpm"))
    ddim_sample(den, seen[k], ts, sched, start=k + 1, callback=keep("ddim"))
    assert first["dpm"][0] == first["ddim"][0] == k + 1
    torch.testing.assert_close(first["dpm"][1], first["ddim"][1], atol=1e-10, rtol=0)
    assert not torch.equal(first["dpm"][1], seen[k + 1])  # the full run's step is 2M
    assert torch.equal(resumed, dpm_solver_pp_2m(den, seen[k], ts[k + 1 :], sched))
    assert not torch.equal(resumed, full)
    torch.testing.assert_close(resumed, full, atol=0.05, rtol=0)


# (c) Steering: what a callback pastes in after every step is there at the end.


@pytest.mark.parametrize("name", DDPM_FAMILY)
def test_pasted_region_stays_pasted(name, sched, ts, x):
    run = ddpm_family(name, sched, correlated_denoiser(sched))
    known = torch.full((x.shape[0],), 0.75, dtype=x.dtype)
    steps = []

    def paste(i, x, *_):
        steps.append(i)
        x = x.clone()
        x[:, 0] = known
        return x

    out = run(x, ts, callback=paste)
    assert steps == list(range(STEPS))
    assert torch.equal(out[:, 0], known)
    free = run(x, ts)
    assert not torch.allclose(out[:, 1], free[:, 1], atol=1e-3)  # coupled: dim 1 followed


@pytest.mark.parametrize("solver", ODE_SOLVERS)
def test_ode_pasted_region_stays_pasted(solver, x):
    known = torch.full((x.shape[0],), -0.25, dtype=x.dtype)

    def paste(i, x):
        return torch.stack([known, x[:, 1]], 1)

    times = flow_time_grid(STEPS)
    out, _ = solve(solver, coupled_velocity, x, times, callback=paste)
    assert torch.equal(out[:, 0], known)
    free = solve_fixed(solver, coupled_velocity, x, times)
    assert not torch.allclose(out[:, 1], free[:, 1], atol=1e-3)


def test_probability_flow_in_place_edit_steers_too(sched, ts, x):
    run = ddpm_family("pf-heun", sched, correlated_denoiser(sched))

    def in_place(i, x):
        x[:, 0] = 0.5

    out = run(x, ts, callback=in_place)
    assert torch.all(out[:, 0] == 0.5)


def test_callback_must_return_none_or_a_like_tensor(sched, ts, x):
    den = correlated_denoiser(sched)
    with pytest.raises(TypeError, match="not int"):
        ddim_sample(den, x, ts, sched, callback=lambda i, x, x0: 1)
    with pytest.raises(TypeError, match=r"not \(64,\)"):
        solve_fixed("euler", coupled_velocity, x, flow_time_grid(4), callback=lambda i, x: x[:, 0])


# (d) Closed form: SDEdit's part-way start from the exact marginal lands on the data.


@pytest.mark.parametrize(("sampler", "tol"), [("ddim", 0.02), ("ddpm", 0.03)])
@pytest.mark.parametrize("frac", [0.3, 0.7])
def test_part_way_start_from_the_marginal_reaches_the_data(sampler, tol, frac):
    """x_t ~ q(x_t) = N(sqrt(abar) MU, abar STD^2 + 1 - abar) at ``ts[start]``; a sampler
    begun there with the exact denoiser of N(MU, STD^2) must end on N(MU, STD^2)."""
    sched = make_schedule("linear")
    ts = spaced_timesteps(1000, 1000, "trailing")
    start = int(frac * len(ts))
    g = torch.Generator().manual_seed(5)
    x_t = start_noise(sched, ts[start], g)
    den = exact_denoiser(sched)
    if sampler == "ddim":
        out = ddim_sample(den, x_t, ts, sched, eta=0.0, start=start)
    else:
        out = ddpm_sample(den, x_t, ts, sched, generator=g, start=start)
    torch.testing.assert_close(out.mean(0), MU, atol=0.02, rtol=0)
    torch.testing.assert_close(out.std(0), STD, rtol=tol, atol=0)
    # The same x_t taken as the state at a later grid point misses the data.
    wrong = ddim_sample(den, x_t, ts, sched, start=(start + len(ts)) // 2)
    assert (wrong.mean(0) - MU).abs().max() > 0.2


def test_ddim_part_way_is_the_closed_form_flow(sched):
    """The probability-flow ODE of Gaussian data keeps the standardized coordinate: from
    x_t at ``ts[start]``, x_0 = MU + STD (x_t - a MU) / sqrt(a^2 STD^2 + s^2)."""
    ts = spaced_timesteps(1000, 1000, "trailing")
    start = 400
    ab = sched.alphas_cumprod[ts[start]]
    x_t = torch.randn(512, 2, dtype=torch.float64)
    out = ddim_sample(exact_denoiser(sched), x_t, ts, sched, start=start)
    exact = MU + STD * (x_t - ab.sqrt() * MU) / (ab * STD**2 + 1 - ab).sqrt()
    torch.testing.assert_close(out, exact, atol=1e-2, rtol=0)  # DDIM's O(h) error


# (e) dopri5 chooses its own steps: no part-way start, no steering; bad starts are refused.


def test_dopri5_refuses_start_and_steering(sched, ts, x):
    times = flow_time_grid(STEPS)
    with pytest.raises(ValueError, match="dopri5"):
        solve("dopri5", coupled_velocity, x, times, start=1)
    with pytest.raises(ValueError, match="dopri5"):
        solve("dopri5", coupled_velocity, x, times, callback=lambda i, x: x)
    velocity = ddpm_velocity(lambda x, t, cond=None: x, sched, "eps", clip=False)
    with pytest.raises(ValueError, match="dopri5"):
        probability_flow_sample("dopri5", velocity, x, ts, sched, start=2)
    with pytest.raises(ValueError, match="dopri5"):
        probability_flow_sample("dopri5", velocity, x, ts, sched, callback=lambda i, x: None)
    # progress counting alone is still fine
    calls = []
    solve("dopri5", coupled_velocity, x, times, on_step=lambda: calls.append(1))
    assert calls


@pytest.mark.parametrize("start", [-1, STEPS])
def test_start_outside_the_grid_is_refused(start, sched, ts, x):
    den = correlated_denoiser(sched)
    for fn in (ddpm_sample, ddim_sample, dpm_solver_pp_2m):
        with pytest.raises(ValueError, match="outside timesteps"):
            fn(den, x, ts, sched, start=start)
    velocity = ddpm_velocity(lambda x, t, cond=None: x, sched, "eps", clip=False)
    with pytest.raises(ValueError, match="outside timesteps"):
        probability_flow_sample("euler", velocity, x, ts, sched, start=start)
    with pytest.raises(ValueError, match="outside times"):  # times has STEPS + 1 points
        solve_fixed("euler", coupled_velocity, x, flow_time_grid(STEPS), start=2 * start + 1)
