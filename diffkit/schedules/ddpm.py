"""Discrete-time DDPM schedules (Ho et al. 2020; Nichol & Dhariwal 2021).

Conventions: timesteps are integers ``t = 0 .. T-1``; ``alphas_cumprod[t]`` is
\\bar\\alpha_t, so ``t = 0`` is the least noisy level and ``t = T-1`` the noisiest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import torch
from torch import Tensor

ScheduleKind = Literal["linear", "cosine"]


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Linearly spaced betas, float64, shape (T,) (DDPM paper, Sec. 4).

    ``beta_start``/``beta_end`` are given for T = 1000 and scaled by 1000 / T, so any T keeps
    the same end point \bar\alpha_T ~ 4e-5 (Nichol & Dhariwal 2021, Sec. 2.4 footnote).
    """
    scale = 1000 / num_steps
    start, end = beta_start * scale, min(beta_end * scale, 0.999)
    return torch.linspace(start, end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Betas of the cosine schedule, float64, shape (T,) (Nichol & Dhariwal 2021, Eq. 17).

    \\bar\\alpha(t) = f(t) / f(0) with f(t) = cos(((t/T + s) / (1 + s)) * pi/2)^2, and
    beta_t = 1 - \\bar\\alpha_t / \\bar\\alpha_{t-1}, clipped at ``max_beta``.
    """
    steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(max=max_beta)


def _gather(values: Tensor, t: Tensor, ndim: int) -> Tensor:
    """values[t] reshaped to (B, 1, ..., 1) so it broadcasts over a (B, ...) tensor."""
    out = values.to(t.device)[t]
    return out.reshape(t.shape[0], *([1] * (ndim - 1)))


@dataclass(frozen=True)
class DDPMSchedule:
    """A discrete noise schedule: betas and the quantities derived from them (float64).

    ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` (DDPM Eq. 4).
    """

    betas: Tensor  # (T,) float64

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]

    @cached_property
    def alphas_cumprod(self) -> Tensor:
        """\bar\alpha_t, (T,) float64; computed once per schedule (samplers read it per step)."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    @cached_property
    def sigmas(self) -> Tensor:
        """EDM's noise level ``sqrt((1 - abar_t) / abar_t)`` per timestep, (T,) float64
        increasing: ``x_t / sqrt(abar_t) = x_0 + sigma_t eps``."""
        ab = self.alphas_cumprod
        return ((1 - ab) / ab).sqrt()

    def alpha_bar(self, t: Tensor, ndim: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """\\bar\\alpha_t for integer timesteps t: (B,), broadcastable to ndim dims."""
        return _gather(self.alphas_cumprod, t, ndim).to(dtype)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Sample q(x_t | x_0) (DDPM Eq. 4). x0, noise: (B, ...); t: (B,) long."""
        ab = self.alpha_bar(t, x0.ndim, x0.dtype)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0) (DDPM Eqs. 6-7); variance is (B, 1, ...)."""
        ab = self.alphas_cumprod
        ab_prev = torch.cat([ab.new_ones(1), ab[:-1]])
        a_t, a_prev = _gather(ab, t, xt.ndim), _gather(ab_prev, t, xt.ndim)  # (B, 1, ...) each
        c0, ct, var, _ = posterior_coefficients(a_t, a_prev)
        return (c0 * x0 + ct * xt).to(xt.dtype), var.to(xt.dtype)


def interpolate_timestep(table: Tensor, abar: Tensor) -> Tensor:
    """The real-valued timestep (float64, like ``abar``'s shape) whose abar, linearly
    interpolated in log abar between integer timesteps, is ``abar``; ``table`` is -log abar
    per timestep ((T,), increasing, on abar's device). Clamped to [0, T - 1]."""
    target = (-abar.double().log()).clamp(table[0], table[-1])
    hi = torch.searchsorted(table, target).clamp(1, table.shape[0] - 1)
    lo = hi - 1
    frac = (target - table[lo]) / (table[hi] - table[lo])
    return lo.double() + frac


def posterior_coefficients(ab: Any, ab_prev: Any) -> tuple[Any, Any, Any, Any]:
    """q(x_prev | x_t, x_0) between any two noise levels ``ab`` = abar_t < ``ab_prev``
    (floats or tensors): ``(c0, ct, variance, beta)`` with mean ``c0 x_0 + ct x_t``. With
    the respaced ``beta = 1 - abar_t / abar_prev`` (Nichol & Dhariwal 2021, Sec. 4) this is
    DDPM Eqs. 6-7 on any sub-sequence of timesteps; on consecutive ones it is beta_t."""
    beta = 1 - ab / ab_prev
    c0 = ab_prev**0.5 * beta / (1 - ab)
    ct = (1 - beta) ** 0.5 * (1 - ab_prev) / (1 - ab)
    var = beta * (1 - ab_prev) / (1 - ab)  # tilde beta
    return c0, ct, var, beta


def make_schedule(
    kind: ScheduleKind, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> DDPMSchedule:
    """Build a schedule by kind: ``linear`` (start..end) or ``cosine``."""
    match kind:
        case "linear":
            return DDPMSchedule(linear_betas(num_steps, beta_start, beta_end))
        case "cosine":
            return DDPMSchedule(cosine_betas(num_steps))
    raise ValueError(f"unknown schedule kind {kind!r}")
