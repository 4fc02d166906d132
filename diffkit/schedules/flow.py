"""Time for rectified flows: noise at t = 0, data at t = 1 (see :mod:`diffkit.samplers.ode`).

Training draws t per example (:func:`sample_flow_time`); sampling walks a grid
(:func:`flow_time_grid`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

TimeSampling = Literal["uniform", "logit_normal"]


def sample_flow_time(
    kind: TimeSampling,
    n: int,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    mean: float = 0.0,
    std: float = 1.0,
    grid: int | None = None,
) -> Tensor:
    """Training times (n,) float32 in [0, 1].

    ``uniform``: t ~ U[0, 1] (Liu et al. 2022). ``logit_normal``: t = sigmoid(u),
    u ~ N(mean, std^2), which spends more of the batch at intermediate times where the
    velocity is hardest to predict (Esser et al. 2024, Sec. 3.1). ``grid = k`` instead
    draws t uniformly from {0, 1/k, ..., (k - 1)/k}: the start points of a k-step Euler
    sampler, which is what k-step distillation trains (Liu et al. 2022, Sec. 2.3).
    """
    if grid is not None:
        return torch.randint(0, grid, (n,), device=device, generator=generator).float() / grid
    match kind:
        case "uniform":
            return torch.rand(n, device=device, generator=generator)
        case "logit_normal":
            u = torch.randn(n, device=device, generator=generator)
            return torch.sigmoid(mean + std * u)
    raise ValueError(f"unknown time sampling {kind!r}")


def flow_time_grid(steps: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """``steps + 1`` uniform times from 0 (noise) to 1 (data)."""
    if steps < 1:
        raise ValueError("need at least one step")
    return torch.linspace(0.0, 1.0, steps + 1, dtype=dtype)
