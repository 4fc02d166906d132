"""ODE solvers against the closed-form flow between two Gaussians.

Noise x_0 ~ N(0, I), data x_1 ~ N(mu, sigma^2 I), x_t = t x_1 + (1 - t) x_0. The rectified
flow's velocity is E[x_1 - x_0 | x_t] = mu + c(t) (x - t mu) with
c(t) = (t sigma^2 - (1 - t)) / (t^2 sigma^2 + (1 - t)^2), and its ODE moves every point
along x_t = t mu + sqrt(t^2 sigma^2 + (1 - t)^2) x_0: at t = 1, mu + sigma x_0.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from diffkit.samplers import registry
from diffkit.samplers.ode import dopri5, euler_straightness, solve, solve_fixed
from diffkit.schedules.flow import flow_time_grid

MU, SIGMA = 1.5, 2.0


def gaussian_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, *([1] * (x.ndim - 1)))
    c = (t * SIGMA**2 - (1 - t)) / (t**2 * SIGMA**2 + (1 - t) ** 2)
    return MU + c * (x - t * MU)


@pytest.fixture
def x0() -> torch.Tensor:
    return torch.randn(64, 3, dtype=torch.float64)


def errors(solver: str, x0: torch.Tensor, steps_list: list[int]) -> list[float]:
    exact = MU + SIGMA * x0
    out = []
    for steps in steps_list:
        x = solve_fixed(solver, gaussian_velocity, x0, flow_time_grid(steps))  # type: ignore[arg-type]
        out.append(float((x - exact).abs().max()))
    return out


@pytest.mark.parametrize(("solver", "order"), [("euler", 1), ("midpoint", 2), ("heun", 2),
                                                ("rk4", 4)])  # fmt: skip
def test_error_shrinks_at_the_solvers_order(solver: str, order: int, x0):
    steps = [8, 16, 32, 64, 128]
    errs = errors(solver, x0, steps)
    rates = [math.log2(a / b) for a, b in itertools.pairwise(errs)]
    # Halving h divides the error by 2^order once h is small.
    assert rates[-1] > order - 0.25, (errs, rates)
    if solver != "midpoint":  # on this linear ODE its h^2 term cancels: it shows order 3
        assert rates[-1] < order + 0.25, (errs, rates)
    assert all(b < a for a, b in itertools.pairwise(errs))


def test_solve_counts_evaluations_and_matches_solve_fixed(x0):
    calls = []

    def v(x, t):
        calls.append(1)
        return gaussian_velocity(x, t)

    times = flow_time_grid(10)
    for solver in registry.fixed_step(registry.calling("ode")):
        per_step = registry.sampler_spec(solver).calls_per_step
        calls.clear()
        x, nfe = solve(solver, v, x0, times)  # type: ignore[arg-type]
        assert nfe == len(calls) == 10 * per_step
        assert torch.equal(x, solve_fixed(solver, gaussian_velocity, x0, times))  # type: ignore[arg-type]


def test_dopri5_meets_its_tolerance_and_reports_evaluations(x0):
    exact = MU + SIGMA * x0
    loose, nfe_loose = dopri5(gaussian_velocity, x0, rtol=1e-3, atol=1e-3)
    tight, nfe_tight = dopri5(gaussian_velocity, x0, rtol=1e-8, atol=1e-8)
    assert float((tight - exact).abs().max()) < 1e-6
    assert float((loose - exact).abs().max()) < 1e-2
    assert 6 <= nfe_loose < nfe_tight


def test_straightness_is_zero_for_straight_paths_and_matches_its_definition(x0):
    # A constant velocity field: every path is a straight line at constant speed.
    _, s = euler_straightness(lambda x, t: torch.ones_like(x) * 2.0, x0, flow_time_grid(7))
    assert torch.allclose(s, torch.zeros_like(s), atol=1e-12)
    # The Gaussian flow bends (its speed changes along the path): S > 0, and equal to the
    # Riemann sum of ||(x_1 - x_0) - v||^2 / d computed from a stored trajectory.
    times = flow_time_grid(20)
    x1, s = euler_straightness(gaussian_velocity, x0, times)
    xs, vs, x = [], [], x0
    for i in range(20):
        h = times[i + 1] - times[i]
        v = gaussian_velocity(x, times[i].expand(x.shape[0]))
        xs.append(x)
        vs.append((h, v))
        x = x + h * v
    direct = sum(h * ((x1 - x0) - v).pow(2).mean(1) for h, v in vs)
    assert torch.allclose(x, x1) and torch.allclose(s, direct, rtol=1e-9, atol=1e-12)
    assert float(s.min()) > 0


def test_dopri5_never_evaluates_outside_the_interval(x0):
    seen = []

    def v(x, t):
        seen.append(float(t[0]))
        return gaussian_velocity(x, t)

    dopri5(v, x0, 0.0, 1.0, rtol=1e-3, atol=1e-3)
    assert min(seen) >= 0.0 and max(seen) <= 1.0 + 1e-6


def test_dopri5_failure_is_a_solver_error_not_an_assertion():
    """torchdiffeq asserts on step-size underflow; diffkit reports it as a SolverError."""
    from diffkit.samplers.ode import SolverError, dopri5

    with pytest.raises(SolverError, match="dopri5 failed after"):
        dopri5(lambda x, t: x * float("nan"), torch.ones(2, 3))
