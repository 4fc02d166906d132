"""Samplers: pure functions over a denoiser or a velocity field.

* ``(denoiser, x, timesteps, schedule) -> x0``: :func:`ddpm_sample`, :func:`ddim_sample`,
  :func:`dpm_solver_pp_2m`, :func:`dpm_solver_pp_3m`, :func:`unipc_sample`. A
  :data:`Denoiser` is ``(x_t, t) -> (eps, x0)``; build one from a network with
  :func:`make_denoiser`, or write one by hand (tests use the exact denoiser of Gaussian
  data).
* ``(velocity, x, times) -> x``: the ODE solvers of :mod:`diffkit.samplers.ode`, over a
  rectified flow (:func:`make_velocity`) or a DDPM's probability-flow ODE
  (:func:`diffkit.samplers.probability_flow.ddpm_velocity`).
* ``(denoise, renoise, x, steps) -> x``: :func:`consistency_sample`, multistep consistency
  sampling over any model's clean-data estimate.

Every sampler is declared once, by :func:`~diffkit.samplers.registry.sampler` on its
function; :mod:`diffkit.samplers.registry` is what the rest of diffkit asks. The names
below load on first use (PEP 562), so the registry (and the CLI that lists it) is read
without importing torch.
"""

from __future__ import annotations

from diffkit.lazy import lazy_attributes

_WHERE = {
    "Denoiser": "common", "make_denoiser": "common", "make_velocity": "common",
    "consistency_sample": "consistency", "ddim_sample": "ddim", "Variance": "ddpm",
    "ddpm_sample": "ddpm",
    "dpm_solver_pp_2m": "dpm_solver", "dpm_solver_pp_3m": "dpm_solver_3m", "Velocity": "ode",
    "dopri5": "ode", "euler": "ode", "heun": "ode", "midpoint": "ode", "rk4": "ode",
    "solve": "ode",
    "SamplerSpec": "registry", "sampler": "registry", "sampler_spec": "registry",
    "unipc_sample": "unipc",
}  # fmt: skip

__all__ = sorted(_WHERE)

__getattr__ = lazy_attributes(__name__, _WHERE)
