"""The forward process q(x_t | x_0) from a noise schedule alone: no network, no weights.

A noise level ``t`` in [0, 1] counts the way from the image (0) to pure noise (1), the same
for every process:

* a DDPM (Ho et al. 2020, Eq. 4): ``x_t = sqrt(abar_n) x_0 + sqrt(1 - abar_n) eps`` at
  timestep ``n = min(round(t T), T - 1)`` of its T steps (timestep 0 already adds a
  little noise). A value above 1 is a timestep ``n`` itself, an integer in 0..T-1. Without
  a model the betas are linear from 1e-4 to 0.02 over T = 1000 (Ho et al. 2020, Sec. 4) or
  cosine (Nichol & Dhariwal 2021, Eq. 17);
* a rectified flow (Liu et al. 2022): ``x_t = (1 - t) x_0 + t eps``. diffkit's flow runs
  count their time the other way (noise at 0, :mod:`diffkit.schedules.flow`): their time
  is ``1 - t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from diffkit.schedules.ddpm import DDPMSchedule, ScheduleKind, make_schedule

NUM_STEPS = 1000  # T of a DDPM schedule without a model (Ho et al. 2020; Nichol & Dhariwal 2021)


@dataclass(frozen=True)
class Level:
    """One noise level: the value given (``at``), its ``t`` in [0, 1], the DDPM timestep
    (None for a flow) and the coefficients of ``x_t = signal x_0 + noise eps``."""

    at: float
    t: float
    timestep: int | None
    signal: float
    noise: float

    @property
    def label(self) -> str:
        return f"t={self.at:g}"


@dataclass(frozen=True)
class ForwardProcess:
    """A DDPM's forward process (``schedule``) or, with no schedule, rectified-flow
    interpolation."""

    schedule: DDPMSchedule | None = None

    @classmethod
    def ddpm(cls, betas: ScheduleKind) -> ForwardProcess:
        """A DDPM's forward process with ``linear`` or ``cosine`` betas over
        :data:`NUM_STEPS` steps (``ForwardProcess()`` is the flow's)."""
        return cls(make_schedule(betas, NUM_STEPS))

    @property
    def is_flow(self) -> bool:
        return self.schedule is None

    def levels(self, values: list[float]) -> list[Level]:
        """``values`` (see the module's doc) as levels; ValueError saying what the levels
        are if one is not."""
        if self.schedule is None:
            if not all(0 <= v <= 1 for v in values):
                raise ValueError("a flow's levels are t in [0, 1] (0: the image, 1: noise)")
            return [Level(v, v, None, 1 - v, v) for v in values]
        T = self.schedule.num_steps
        if any(v > 1 for v in values):  # timesteps
            if not all(v.is_integer() and 0 <= v < T for v in values):
                raise ValueError(f"values above 1 are DDPM timesteps 0..{T - 1} (integers); "
                                 "give every level as t in [0, 1] or every one as a "
                                 "timestep")  # fmt: skip
            steps = [int(v) for v in values]
            ts = [n / T for n in steps]
        else:
            if not all(v >= 0 for v in values):
                raise ValueError(f"levels are t in [0, 1] or DDPM timesteps 0..{T - 1}")
            steps = [min(round(v * T), T - 1) for v in values]
            ts = list(values)
        abar = self.schedule.alphas_cumprod
        return [Level(v, t, n, math.sqrt(float(abar[n])), math.sqrt(1 - float(abar[n])))
                for v, t, n in zip(values, ts, steps, strict=True)]  # fmt: skip

    def noised(self, x0: Tensor, level: Level, eps: Tensor) -> Tensor:
        """``signal x_0 + noise eps`` at ``level``: a sample of q(x_t | x_0) for ``eps``
        standard normal, shaped as ``x0``."""
        return level.signal * x0 + level.noise * eps


def parse_levels(spec: str) -> list[float]:
    """``--at``'s comma-separated numbers; ValueError if one is not a number."""
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        raise ValueError("expected comma-separated numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError("expected finite numbers")
    return values
