"""ODE solvers for a velocity field: pure functions ``(velocity, x, times) -> x``.

Time convention of every flow in diffkit (Liu, Gong and Liu 2022): ``t = 0`` is noise and
``t = 1`` is data, ``x_t = t x_1 + (1 - t) x_0`` and ``dx/dt = v(x_t, t)``; samplers
integrate forward from t = 0 to t = 1. ``times`` is the grid ``(S + 1,)`` of a fixed-step
solver, increasing; DDPM models join in through
:func:`diffkit.samplers.probability_flow.ddpm_velocity`.

Costs per step, in velocity evaluations: Euler 1, midpoint 2, Heun 2, RK4 4. Their global
errors shrink as O(h), O(h^2), O(h^2), O(h^4). :func:`dopri5` adapts its steps to
``rtol``/``atol`` (Dormand and Prince 1980, via torchdiffeq) and reports how many
evaluations it spent.

Steering (SDEdit, inpainting): a fixed-step solve may begin part-way, at ``times[start]``,
and a callback may replace the state after every step (return a Tensor; None keeps it).
dopri5 chooses its own steps, so it can do neither.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from diffkit.errors import SolverError
from diffkit.samplers.registry import load, sampler

Velocity = Callable[[Tensor, Tensor], Tensor]
"""``v(x: (B, ...), t: (B,) float in [0, 1]) -> (B, ...)``."""

OdeCallback = Callable[[int, Tensor], Tensor | None]
"""``callback(i, x)`` after step ``i`` of a fixed-step solver, x at ``times[i + 1]``; a
returned Tensor replaces x for the following steps, None keeps it."""


# A flow's default at 10 steps, as measured on the small preset (docs/benchmarks.md 17).
@sampler("euler", family="ode", calls_per_step=1, summary="Euler", default_for=("flow",),
         steps=10, order=40)  # fmt: skip
def euler_step(v: Velocity, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    return x + h * v(x, t)


@sampler("midpoint", family="ode", calls_per_step=2, summary="explicit midpoint", order=50)
def midpoint_step(v: Velocity, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    k1 = v(x, t)
    return x + h * v(x + 0.5 * h * k1, t + 0.5 * h)


@sampler("heun", family="ode", calls_per_step=2, summary="Heun (Karras et al. 2022)", order=60)
def heun_step(v: Velocity, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    """The explicit trapezoid rule (Heun's method; Karras et al. 2022, Alg. 1)."""
    k1 = v(x, t)
    k2 = v(x + h * k1, t + h)
    return x + 0.5 * h * (k1 + k2)


@sampler("rk4", family="ode", calls_per_step=4, summary="classic Runge-Kutta 4", order=70)
def rk4_step(v: Velocity, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
    k1 = v(x, t)
    k2 = v(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = v(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = v(x + h * k3, t + h)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def check_start(start: int, size: int, grid: str) -> int:
    """``start`` if it indexes the grid named ``grid`` of ``size`` points, else ValueError."""
    if not 0 <= start < size:
        raise ValueError(f"start={start} is outside {grid} (0 .. {size - 1})")
    return start


def check_unsteered(solver: str, start: int, callback: object) -> None:
    """An adaptive ``solver`` chooses its own steps: ValueError unless it runs the whole
    span (``start`` 0) without a steering ``callback``."""
    if start != 0 or callback is not None:
        raise ValueError(f"{solver} is adaptive: it cannot start part-way (start) or be "
                         "steered (callback); use a fixed-step solver")  # fmt: skip


def steered(x: Tensor, out: object) -> Tensor:
    """The state after a steering callback returned ``out``: ``x`` for None, else ``out``,
    which must be a Tensor shaped like ``x``."""
    if out is None:
        return x
    if not isinstance(out, Tensor) or out.shape != x.shape:
        what = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise TypeError(f"a sampler callback returns None or a {tuple(x.shape)} Tensor, "
                        f"not {what}")  # fmt: skip
    return out


@torch.no_grad()
def solve_fixed(
    solver: str,
    velocity: Velocity,
    x: Tensor,
    times: Tensor,
    *,
    start: int = 0,
    callback: OdeCallback | None = None,
) -> Tensor:
    """Integrate ``dx/dt = velocity(x, t)`` from ``times[start]`` (x: (B, ...), the state
    there) to ``times[-1]`` with one ``solver`` step per interval of ``times`` ((S + 1,),
    any floats). Step ``i`` goes from ``times[i]`` to ``times[i + 1]``, whatever ``start``.
    ``callback(i, x)`` after step ``i`` may steer: see :data:`OdeCallback`."""
    spec = load(solver)
    if spec.family != "ode" or spec.adaptive:
        raise ValueError(f"{solver} is not a fixed-step ODE solver")
    step = spec.fn
    grid = times.to(device=x.device, dtype=x.dtype)
    for i in range(check_start(start, grid.shape[0], "times"), grid.shape[0] - 1):
        t, h = grid[i].expand(x.shape[0]), grid[i + 1] - grid[i]  # (1) t_i, h_i = t_{i+1} - t_i
        x = step(velocity, x, t, h)  # (2) x_{i+1} = x_i + h_i Phi(x_i, t_i, h_i)
        if callback is not None:
            x = steered(x, callback(i, x))  # (3) steer: x_{i+1} <- callback(i, x_{i+1})
    return x


def euler(velocity: Velocity, x: Tensor, times: Tensor, **kw) -> Tensor:
    return solve_fixed("euler", velocity, x, times, **kw)


def midpoint(velocity: Velocity, x: Tensor, times: Tensor, **kw) -> Tensor:
    return solve_fixed("midpoint", velocity, x, times, **kw)


def heun(velocity: Velocity, x: Tensor, times: Tensor, **kw) -> Tensor:
    return solve_fixed("heun", velocity, x, times, **kw)


def rk4(velocity: Velocity, x: Tensor, times: Tensor, **kw) -> Tensor:
    return solve_fixed("rk4", velocity, x, times, **kw)


@sampler("dopri5", family="ode", calls_per_step=None, options=("rtol", "atol"),
         summary="adaptive Dormand-Prince 5(4)", order=80)  # fmt: skip
@torch.no_grad()
def dopri5(
    velocity: Velocity,
    x: Tensor,
    t0: float = 0.0,
    t1: float = 1.0,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    on_eval: Callable[[], None] | None = None,
) -> tuple[Tensor, int]:
    """Adaptive Dormand-Prince 5(4) from ``t0`` to ``t1``: ``(x(t1), evaluations)``; the
    field is only evaluated inside [t0, t1].

    torchdiffeq's ``odeint`` does the step-size control (error norm, PI controller,
    initial step selection), which is easy to get subtly wrong by hand. The error is
    measured over the whole batch, so every sample takes the steps of the hardest one.
    """
    from torchdiffeq import odeint

    nfe = 0

    def f(t: Tensor, y: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        if on_eval is not None:
            on_eval()
        return velocity(y, t.to(y.dtype).expand(y.shape[0]))

    span = torch.tensor([t0, t1], dtype=torch.float64 if x.dtype == torch.float64 else
                        torch.float32, device=x.device)  # fmt: skip
    # step_t: land a step exactly on t1 instead of stepping past it and interpolating back,
    # which would evaluate the field outside [t0, t1] (beyond the data end of a flow).
    try:
        out = odeint(f, x, span, rtol=rtol, atol=atol, method="dopri5",
                     options={"step_t": span[1:]})  # fmt: skip
    except AssertionError as exc:  # torchdiffeq signals step underflow, NaNs, step limit so
        raise SolverError(f"dopri5 failed after {nfe} evaluations ({exc}); loosen "
                          "--rtol/--atol or use a fixed-step solver") from None  # fmt: skip
    return out[-1], nfe


def solve(
    solver: str,
    velocity: Velocity,
    x: Tensor,
    times: Tensor,
    *,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    on_step: Callable[[], None] | None = None,
    start: int = 0,
    callback: OdeCallback | None = None,
) -> tuple[Tensor, int]:
    """Any solver by name from ``times[start]`` to ``times[-1]``: ``(x, evaluations)``.

    ``on_step()`` only counts progress: after every step (every evaluation for dopri5).
    ``start`` and the steering ``callback`` are those of :func:`solve_fixed`; dopri5 uses
    only the end points of ``times`` and refuses both (ValueError)."""
    spec = load(solver)
    if spec.adaptive:
        check_unsteered(solver, start, callback)
        t0, t1 = float(times[0]), float(times[-1])
        return spec.fn(velocity, x, t0, t1, rtol=rtol, atol=atol, on_eval=on_step)

    def hook(i: int, x: Tensor) -> Tensor | None:
        if on_step is not None:
            on_step()
        return None if callback is None else callback(i, x)

    x = solve_fixed(solver, velocity, x, times, start=start,
                    callback=hook if on_step or callback else None)  # fmt: skip
    return x, spec.calls_per_step * (times.shape[0] - 1 - start)


@torch.no_grad()
def euler_straightness(
    velocity: Velocity,
    x: Tensor,
    times: Tensor,
    *,
    callback: Callable[[int, Tensor], object] | None = None,
) -> tuple[Tensor, Tensor]:
    """Euler integration over ``times`` (0 to 1) that also measures how straight each
    path is: ``(x_1, S)`` with S: (B,) float64 (Liu et al. 2022, Eq. 5, per dimension)::

        S = sum_i h_i ||(x_1 - x_0) - v(x_{t_i}, t_i)||^2 / d

    the Riemann sum of ``int_0^1 ||(x_1 - x_0) - v(x_t, t)||^2 dt`` on the solver's own
    grid; 0 exactly when every path is a straight line at constant speed. For Euler
    ``x_1 - x_0 = sum_i h_i v_i`` and ``sum_i h_i = 1``, so S = sum_i h_i ||v_i||^2 / d -
    ||x_1 - x_0||^2 / d: two running sums, no stored trajectory. ``callback(i, x)`` only
    observes (S is about the unsteered path); what it returns is ignored.
    """
    x_start = x
    grid = times.to(device=x.device, dtype=x.dtype)
    sq = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for i in range(grid.shape[0] - 1):
        h = grid[i + 1] - grid[i]
        v = velocity(x, grid[i].expand(x.shape[0]))
        sq += h.double() * v.double().pow(2).flatten(1).sum(1)  # no host sync on GPUs
        x = x + h * v
        if callback is not None:
            callback(i, x)
    disp = (x - x_start).double().pow(2).flatten(1).sum(1)
    return x, (sq - disp) / x[0].numel()
