"""DDIM sampling (Song, Meng and Ermon 2021), deterministic at ``eta = 0``."""

from __future__ import annotations

import torch
from torch import Tensor

from diffkit.samplers.common import Denoiser, StepCallback, prev_alpha_bars
from diffkit.schedules import DDPMSchedule


@torch.no_grad()
def ddim_sample(
    model: Denoiser,
    x: Tensor,
    timesteps: Tensor,
    schedule: DDPMSchedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Integrate from ``x`` (noise, (B, ...)) over ``timesteps`` (S,) descending.

    One step (DDIM Eq. 12), with ``a = abar_t`` and ``p = abar_prev``:
    ``x_prev = sqrt(p) x0 + sqrt(1 - p - sigma^2) eps + sigma z`` where
    ``sigma = eta sqrt((1 - p) / (1 - a)) sqrt(1 - a / p)`` (Eq. 16). The last step goes to
    ``p = 1`` and returns the predicted x0.
    """
    ab_all, ab_prev_all = prev_alpha_bars(schedule, timesteps)
    for i, t in enumerate(timesteps.tolist()):
        ab, ab_prev = ab_all[i].item(), ab_prev_all[i].item()
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        eps, x0 = model(x, tt)
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
        x = ab_prev**0.5 * x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * eps
        if sigma > 0:
            x = x + sigma * torch.randn(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
        if callback is not None:
            callback(i, x, x0)
    return x
