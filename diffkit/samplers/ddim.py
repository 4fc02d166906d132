"""DDIM sampling (Song, Meng and Ermon 2021), deterministic at ``eta = 0``."""

from __future__ import annotations

import torch
from torch import Tensor

from diffkit.samplers.common import Denoiser, StepCallback, prev_alpha_bars
from diffkit.samplers.ode import check_start, steered
from diffkit.samplers.registry import sampler
from diffkit.schedules import DDPMSchedule


@sampler("ddim", family="ddpm", calls_per_step=1, stochastic=True, options=("spacing", "eta"),
         summary="DDIM (Song et al. 2021)", order=20)  # fmt: skip
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
    start: int = 0,
) -> Tensor:
    """Integrate from ``x`` (B, ...), the state at ``timesteps[start]`` (noise for ``start =
    0``; an SDEdit start: the noised image), over the rest of ``timesteps`` (S,) descending.

    One step (DDIM Eq. 12), with ``a = abar_t`` and ``p = abar_prev``:
    ``x_prev = sqrt(p) x0 + sqrt(1 - p - sigma^2) eps + sigma z`` where
    ``sigma = eta sqrt((1 - p) / (1 - a)) sqrt(1 - a / p)`` (Eq. 16). The last step goes to
    ``p = 1`` and returns the predicted x0. Step ``i`` goes from ``timesteps[i]`` to
    ``timesteps[i + 1]`` whatever ``start``, so at ``eta = 0`` a run from ``start`` is
    bit-identical to the tail of a full run. ``callback`` may steer
    (:data:`~diffkit.samplers.common.StepCallback`).
    """
    ab_all, ab_prev_all = prev_alpha_bars(schedule, timesteps)
    ts = timesteps.tolist()
    for i in range(check_start(start, len(ts), "timesteps"), len(ts)):
        ab, ab_prev = ab_all[i].item(), ab_prev_all[i].item()  # (1) a = abar_t, p = abar_prev
        tt = torch.full((x.shape[0],), ts[i], device=x.device, dtype=torch.long)
        eps, x0 = model(x, tt)[:2]  # (2) eps_hat, x0_hat at (x_t, t)
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5  # (3) Eq. 16
        x = ab_prev**0.5 * x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * eps  # (4) Eq. 12
        if sigma > 0:
            x = x + sigma * torch.randn(
                x.shape, generator=generator, device=x.device, dtype=x.dtype
            )
        if callback is not None:  # (5) steer: x_prev <- callback(i, x_prev, x0_hat)
            x = steered(x, callback(i, x, x0))
    return x
