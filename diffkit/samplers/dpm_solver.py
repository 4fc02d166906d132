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
from diffkit.samplers.ode import check_start, steered
from diffkit.samplers.registry import sampler
from diffkit.schedules import DDPMSchedule


def half_log_snr(ab: float) -> float:
    """``lambda = log(a / s) = 0.5 log(abar / (1 - abar))`` at ``abar < 1``: the time
    variable of DPM-Solver's exponential integrator."""
    return 0.5 * math.log(ab / (1 - ab))


def second_order_d(x0: Tensor, x0_prev: Tensor, r: float) -> Tensor:
    """2M's x0 for the step (Eq. 10): ``(1 + 1/(2r)) D_i - 1/(2r) D_{i-1}``, ``r =
    h_{i-1} / h_i``, the last two x0 predictions extrapolated to the step's midpoint."""
    return (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev


# The DDPM family's default at 10 steps: the fastest setting within 1.5x of the best FID
# measured on the small preset (docs/benchmarks.md section 17).
@sampler("dpm++2m", family="ddpm", calls_per_step=1, options=("spacing",),
         summary="DPM-Solver++(2M) (Lu et al. 2022)", default_for=("ddpm",), steps=10,
         order=30)  # fmt: skip
@torch.no_grad()
def dpm_solver_pp_2m(
    model: Denoiser,
    x: Tensor,
    timesteps: Tensor,
    schedule: DDPMSchedule,
    *,
    callback: StepCallback | None = None,
    start: int = 0,
) -> Tensor:
    """Integrate from ``x``, the state at ``timesteps[start]`` (noise for ``start = 0``), over
    the rest of ``timesteps`` (S,) descending; the last step lands on clean data.

    The solver carries one state besides x: the previous x0 prediction. A run from ``start >
    0`` has none, so its first step is first order (DDIM), as at the beginning of a full
    run; that is why it is not bit-identical to the tail of a full run from the same x (it is
    bit-identical to a full run over ``timesteps[start:]``). A steering ``callback``
    (:data:`~diffkit.samplers.common.StepCallback`) replaces x only; the carried x0 stays.
    """
    ab_all, ab_prev_all = prev_alpha_bars(schedule, timesteps)
    x0_prev: Tensor | None = None
    h_prev = 0.0
    ts = timesteps.tolist()
    for i in range(check_start(start, len(ts), "timesteps"), len(ts)):
        ab, ab_next = ab_all[i].item(), ab_prev_all[i].item()
        tt = torch.full((x.shape[0],), ts[i], device=x.device, dtype=torch.long)
        x0 = model(x, tt)[1]  # (1) D_i = x0_hat(x_{i-1}, t_{i-1})
        if ab_next >= 1.0:  # final step: sigma = 0
            x = x0
        else:
            lam, lam_next = half_log_snr(ab), half_log_snr(ab_next)  # (2) lambda = log(a/s)
            h = lam_next - lam  # h_i = lambda_i - lambda_{i-1}
            d = x0
            if x0_prev is not None:  # (3) 2M: D = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}
                d = second_order_d(x0, x0_prev, h_prev / h)
            s, s_next, a_next = (1 - ab) ** 0.5, (1 - ab_next) ** 0.5, ab_next**0.5
            x = (s_next / s) * x - a_next * math.expm1(-h) * d  # (4) Eq. 9
            x0_prev, h_prev = x0, h
        if callback is not None:  # (5) steer: x_i <- callback(i, x_i, D_i)
            x = steered(x, callback(i, x, x0))
    return x
