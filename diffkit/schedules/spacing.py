"""Timestep grids for samplers that take fewer steps than the training schedule.

Spacings follow Lin et al. 2023 ("Common Diffusion Noise Schedules and Sample Steps are
Flawed", Table 2): ``leading`` (DDIM's original), ``trailing`` (starts at T-1) and
``linspace``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Spacing = Literal["leading", "trailing", "linspace"]


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
        case _:
            raise ValueError(f"unknown spacing {spacing!r}")
    return ts.long().sort(descending=True).values
