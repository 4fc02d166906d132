"""DPM-Solver++(3M) (Lu et al. 2022, "DPM-Solver++"): the third-order multistep solver of
the diffusion ODE in its data-prediction (x0) form, as the authors' code and diffusers'
``DPMSolverMultistepScheduler(solver_order=3)`` write it.

In ``lambda = log(a / s)`` the exact solution from t_{i-1} to t_i is ``x_i = (s_i / s_{i-1})
x_{i-1} + a_i e^{-h_i} \\int_0^{h_i} e^u x0(lambda_{i-1} + u) du``, ``h_i = lambda_i -
lambda_{i-1}``. 3M expands x0 about lambda_{i-1} from the last three x0 predictions D_i,
D_{i-1}, D_{i-2}: with ``r0 = h_{i-1} / h_i``, ``r1 = h_{i-2} / h_i``,

    D1_0 = (D_i - D_{i-1}) / r0,    D1_1 = (D_{i-1} - D_{i-2}) / r1,
    D1 = D1_0 + r0 / (r0 + r1) (D1_0 - D1_1),    D2 = (D1_0 - D1_1) / (r0 + r1),
    x_i = (s_i / s_{i-1}) x_{i-1} - a_i phi1 D_i + a_i phi2 D1 - a_i phi3 D2,

``phi1 = e^{-h} - 1``, ``phi2 = phi1 / h + 1``, ``phi3 = phi2 / h - 1/2``. D1 is ``h x0'``;
D2 is ``h^2 x0'' / 2``, so the x0'' term carries half the weight the exact integral gives
it (``-2 a_i phi3 D2``); every reference implementation writes it so (the authors',
diffusers', k-diffusion's) and it is kept, to be the sampler they call 3M. Its one-step
error is therefore O(h^3) like 2M's (with a smaller constant on Gaussian data), not O(h^4):
on a uniform lambda grid with exact history it falls 8x per halving of h, 16x with the
full weight.

The first step is first order (DDIM) and the second is 2M's, for want of history; the final
step to abar = 1 (lambda infinite) returns the current x0 prediction; and on grids of fewer
than 15 steps the step before it is 2M's too (diffusers' ``lower_order_final``).
One network evaluation per step, any eps/x0/v model (through :data:`Denoiser`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffkit.samplers.common import Denoiser, StepCallback, prev_alpha_bars
from diffkit.samplers.dpm_solver import half_log_snr, second_order_d
from diffkit.samplers.ode import check_start, steered
from diffkit.samplers.registry import sampler
from diffkit.schedules import DDPMSchedule

LOWER_ORDER_FINAL_BELOW = 15
"""Grids of fewer steps take their second-to-last step at second order (diffusers'
``lower_order_final``: third-order extrapolation over the few, long final steps of a short
grid is unstable)."""


@sampler("dpm++3m", family="ddpm", calls_per_step=1, options=("spacing",),
         summary="DPM-Solver++(3M) (Lu et al. 2022)", order=32)  # fmt: skip
@torch.no_grad()
def dpm_solver_pp_3m(
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

    The solver carries the last two x0 predictions and their step sizes. A run from ``start
    > 0`` has none: its first step is first order (DDIM) and its second 2M's, as at the
    beginning of a full run, so it is not bit-identical to the tail of a full run from the
    same x. Whether the second-to-last step is 2M's depends on the whole grid's length (as
    in diffusers' image-to-image, which slices a full grid), so such a run equals a full
    run over ``timesteps[start:]`` when both grids are on the same side of
    :data:`LOWER_ORDER_FINAL_BELOW`. A steering ``callback``
    (:data:`~diffkit.samplers.common.StepCallback`) replaces x only; the carried x0s stay.
    """
    ab_all, ab_prev_all = prev_alpha_bars(schedule, timesteps)
    ts = timesteps.tolist()
    short = len(ts) < LOWER_ORDER_FINAL_BELOW
    x0s: list[Tensor] = []  # D_{i-2}, D_{i-1}: the previous steps' x0 predictions
    hs: list[float] = []  # h_{i-2}, h_{i-1}
    for i in range(check_start(start, len(ts), "timesteps"), len(ts)):
        ab, ab_next = ab_all[i].item(), ab_prev_all[i].item()
        tt = torch.full((x.shape[0],), ts[i], device=x.device, dtype=torch.long)
        x0 = model(x, tt)[1]  # (1) D_i = x0_hat(x_{i-1}, t_{i-1})
        if ab_next >= 1.0:  # final step: sigma = 0
            x = x0
        else:
            lam, lam_next = half_log_snr(ab), half_log_snr(ab_next)  # (2) lambda = log(a/s)
            h = lam_next - lam  # h_i = lambda_i - lambda_{i-1}
            order = min(len(x0s) + 1, 2 if short and i == len(ts) - 2 else 3)
            s, s_next, a_next = (1 - ab) ** 0.5, (1 - ab_next) ** 0.5, ab_next**0.5
            phi1 = math.expm1(-h)
            if order < 3:  # (3) DDIM, then 2M: D = (1 + 1/(2 r0)) D_i - 1/(2 r0) D_{i-1}
                d = x0 if order == 1 else second_order_d(x0, x0s[-1], hs[-1] / h)
                x = (s_next / s) * x - a_next * phi1 * d  # Eq. 9
            else:  # (4) 3M: divided differences of D_i, D_{i-1}, D_{i-2}
                r0, r1 = hs[-1] / h, hs[-2] / h
                d1_0, d1_1 = (x0 - x0s[-1]) / r0, (x0s[-1] - x0s[-2]) / r1
                d1 = d1_0 + r0 / (r0 + r1) * (d1_0 - d1_1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi2 = phi1 / h + 1
                phi3 = phi2 / h - 0.5
                x = (s_next / s) * x - a_next * phi1 * x0 + a_next * phi2 * d1 - a_next * phi3 * d2
            x0s, hs = [*x0s[-1:], x0], [*hs[-1:], h]
        if callback is not None:  # (5) steer: x_i <- callback(i, x_i, D_i)
            x = steered(x, callback(i, x, x0))
    return x
