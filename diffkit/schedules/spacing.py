"""Timestep grids for samplers that take fewer steps than the training schedule.

Spacings follow Lin et al. 2023 ("Common Diffusion Noise Schedules and Sample Steps are
Flawed", Table 2): ``leading`` (DDIM's original), ``trailing`` (starts at T-1) and
``linspace``. ``karras`` spaces the noise levels instead of the timesteps (Karras et al.
2022, Eq. 5) and so needs the schedule: :func:`karras_timesteps`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Spacing = Literal["leading", "trailing", "linspace", "karras"]


def spaced_timesteps(num_train_steps: int, num_steps: int, spacing: Spacing = "trailing") -> Tensor:
    """Return ``num_steps`` distinct timesteps in ``[0, T)``, descending, as a long tensor (S,)."""
    T = num_train_steps
    if not 1 <= num_steps <= T:
        raise ValueError(f"steps must be between 1 and {T}, got {num_steps}")
    match spacing:
        case "leading":
            ts = torch.arange(num_steps, dtype=torch.float64) * (T // num_steps)
        case "trailing":
            # T - i*T/S for i < S; built from integers, never a float-step arange (whose
            # length can come out one too long).
            i = torch.arange(num_steps, dtype=torch.float64)
            ts = (T - i * T / num_steps).round() - 1
        case "linspace":
            ts = torch.linspace(0, T - 1, num_steps, dtype=torch.float64).round()
        case "karras":
            raise ValueError("karras spacing depends on the noise schedule: karras_timesteps")
        case _:
            raise ValueError(f"unknown spacing {spacing!r}")
    return ts.long().sort(descending=True).values


def karras_timesteps(alphas_cumprod: Tensor, num_steps: int, rho: float = 7.0) -> Tensor:
    """``num_steps`` descending timesteps (S,) long whose noise levels follow Karras et al.
    2022, Eq. 5: ``sigma_i = (sigma_max^(1/rho) + i / (S - 1) (sigma_min^(1/rho) -
    sigma_max^(1/rho)))^rho`` between the schedule's own extremes (``sigma^2 = (1 - abar) /
    abar`` at t = T-1 and t = 0), each rounded to the nearest timestep in log abar.

    rho = 7 puts most steps at low noise. Where two levels round to one timestep (long grids,
    near t = 0) the lower one moves down by one, so the grid keeps S distinct timesteps."""
    from diffkit.schedules.ddpm import interpolate_timestep

    T = alphas_cumprod.shape[0]
    if not 1 <= num_steps <= T:
        raise ValueError(f"steps must be between 1 and {T}, got {num_steps}")
    sigma = ((1 - alphas_cumprod) / alphas_cumprod).sqrt()  # (T,) increasing in t
    hi, lo = sigma[-1] ** (1 / rho), sigma[0] ** (1 / rho)
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
    levels = (hi + ramp * (lo - hi)) ** rho  # (S,) decreasing
    ts = interpolate_timestep(-alphas_cumprod.log(), 1 / (1 + levels**2)).round().long()
    for i in range(1, num_steps):  # strictly descending: a repeat steps one timestep lower
        ts[i] = min(int(ts[i]), int(ts[i - 1]) - 1)
    for i in range(num_steps - 1, -1, -1):  # ... and none below 0 (then the top moves up)
        ts[i] = max(int(ts[i]), num_steps - 1 - i)
    return ts
