"""Noise schedules and timestep grids (pure tensor functions)."""

from diffkit.schedules.ddpm import DDPMSchedule, cosine_betas, linear_betas, make_schedule
from diffkit.schedules.spacing import Spacing, spaced_timesteps

__all__ = [
    "DDPMSchedule",
    "Spacing",
    "cosine_betas",
    "linear_betas",
    "make_schedule",
    "spaced_timesteps",
]
