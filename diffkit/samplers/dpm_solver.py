"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): a second-order
multistep solver of the diffusion ODE in its data-prediction (x0) form.

In ``lambda = log(a / s)`` (half the log-SNR) the exact solution from t_{i-1} to t_i is
``x_i = (s_i / s_{i-1}) x_{i-1} - a_i (e^{-h_i} - 1) D_i`` (Eq. 9 with x0 frozen over the
step), ``h_i = lambda_i - lambda_{i-1}``. 2M takes ``D_i`` from the last two x0 predictions
(Eq. 10 / Alg. 2): ``D_i = (1 + 1/(2 r)) x0_{i-1} - 1/(2 r) x0_{i-2}`` with ``r =
h_{i-1} / h_i``; the first step is first order (DDIM), and so is the final step to abar = 1,
where lambda is infinite and the step returns the current x0 prediction.
One network evaluation per step, any eps/x0/v model (through :data:`Denoiser`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffkit.samplers.common import Denoiser, StepCallback, prev_alpha_bars
from diffkit.schedules import DDPMSchedule


@torch.no_grad()
def dpm_solver_pp_2m(
    model: Denoiser,
    x: Tensor,
    timesteps: Tensor,
    schedule: DDPMSchedule,
    *,
    callback: StepCallback | None = None,
) -> Tensor:
    """Integrate from ``x`` (noise at ``timesteps[0]``) over ``timesteps`` (S,) descending;
    the last step lands on clean data."""
    ab_all, ab_prev_all = prev_alpha_bars(schedule, timesteps)
    x0_prev: Tensor | None = None
    h_prev = 0.0
    for i, t in enumerate(timesteps.tolist()):
        ab, ab_next = ab_all[i].item(), ab_prev_all[i].item()
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        _, x0 = model(x, tt)
        if ab_next >= 1.0:  # final step: sigma = 0
            x = x0
        else:
            lam = 0.5 * math.log(ab / (1 - ab))
            lam_next = 0.5 * math.log(ab_next / (1 - ab_next))
            h = lam_next - lam
            d = x0
            if x0_prev is not None:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev
            s, s_next, a_next = (1 - ab) ** 0.5, (1 - ab_next) ** 0.5, ab_next**0.5
            x = (s_next / s) * x - a_next * math.expm1(-h) * d
            x0_prev, h_prev = x0, h
        if callback is not None:
            callback(i, x, x0)
    return x
