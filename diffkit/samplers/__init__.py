"""Samplers: pure functions over a denoiser or a velocity field.

* ``(denoiser, x, timesteps, schedule) -> x0``: :func:`ddpm_sample`, :func:`ddim_sample`,
  :func:`dpm_solver_pp_2m`. A :data:`Denoiser` is ``(x_t, t) -> (eps, x0)``; build one from
  a network with :func:`make_denoiser`, or write one by hand (tests use the exact denoiser
  of Gaussian data).
* ``(velocity, x, times) -> x``: the ODE solvers of :mod:`diffkit.samplers.ode`, over a
  rectified flow (:func:`make_velocity`) or a DDPM's probability-flow ODE
  (:func:`diffkit.samplers.probability_flow.ddpm_velocity`).
"""

from diffkit.samplers.common import Denoiser, make_denoiser, make_velocity
from diffkit.samplers.ddim import ddim_sample
from diffkit.samplers.ddpm import Variance, ddpm_sample
from diffkit.samplers.dpm_solver import dpm_solver_pp_2m
from diffkit.samplers.ode import Velocity, dopri5, euler, heun, midpoint, rk4, solve

__all__ = [
    "Denoiser",
    "Variance",
    "Velocity",
    "ddim_sample",
    "ddpm_sample",
    "dopri5",
    "dpm_solver_pp_2m",
    "euler",
    "heun",
    "make_denoiser",
    "make_velocity",
    "midpoint",
    "rk4",
    "solve",
]
