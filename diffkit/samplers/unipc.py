"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast
Sampling of Diffusion Models"): the multistep predictor UniP and the corrector UniC in the
data-prediction (x0) form, with B(h) = e^h - 1 (the paper's B_2, "bh2"), order 2.

In ``lambda = log(a / s)`` (half the log-SNR) one step from t_{i-1} to t_i, ``h_i =
lambda_i - lambda_{i-1}``, freezes x0 at ``m_{i-1}`` and adds a correction (Sec. 3)::

    x_i = (s_i / s_{i-1}) x_{i-1} - a_i (e^{-h_i} - 1) m_{i-1}
          - a_i B(h_i) sum_k rho_k D_k,      D_k = (m_{i-1-k} - m_{i-1}) / r_k,

``r_k = (lambda_{i-1-k} - lambda_{i-1}) / h_i`` (in the data-prediction form the exponents
carry -h, so B(h_i) = e^{-h_i} - 1). UniP-2 (Sec. 3.2) takes the previous output, ``rho_1
= 1/2``: that is DPM-Solver++(2M)'s step exactly (``m + D_1 / 2 = (1 + 1/(2r)) m_{i-1} -
1/(2r) m_{i-2}``). UniC-p (Sec. 3.1, Theorem 3.1) also uses the output at the new point,
``D = m_i - m_{i-1}`` with r = 1, and solves ``R_p rho = g_p / B(h)`` (``R_p`` the powers
``r_k^{j-1}``, ``g_j = j! h phi_{j+1}(h)``) for its weights; UniC-1 is ``rho = 1/2``.

The corrector of step i needs the output at the point step i predicted, and that one
evaluation also feeds step i + 1's predictor: one network evaluation per step, the
corrector raising the order by one at no cost (Sec. 3.1, "UniPC" multistep). Step i's
predictor is first order when there is no previous output (the first step, any step at
``start``) and on the final step to abar = 1, where lambda is infinite and the step returns
the current x0 prediction (diffusers' ``lower_order_final``, ``final_sigmas_type="zero"``);
the corrector of the final step is not computed, since that step's result does not depend
on the state. Matches diffusers' ``UniPCMultistepScheduler(solver_order=2,
predict_x0=True, solver_type="bh2")`` on the same grid (tests/external).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffkit.samplers.common import Denoiser, StepCallback, prev_alpha_bars
from diffkit.samplers.dpm_solver import half_log_snr
from diffkit.samplers.ode import check_start, steered
from diffkit.samplers.registry import sampler
from diffkit.schedules import DDPMSchedule


def _unic2_weights(h: float, r: float) -> tuple[float, float]:
    """UniC-2's (rho_1, rho_2) for B(h) = e^{-h} - 1 (data prediction): the solution of
    ``[[1, 1], [r, 1]] rho = (g_1, g_2) / B``, ``g_1 = z phi_2(z) = (e^z - 1)/z - 1`` and
    ``g_2 = 2 z phi_3(z) = 2 (g_1 / z - 1/2)`` at ``z = -h`` (Theorem 3.1, p = 2)."""
    z = -h
    b = math.expm1(z)
    g1 = math.expm1(z) / z - 1
    g2 = 2 * (g1 / z - 0.5)
    b1, b2 = g1 / b, g2 / b
    rho1 = (b1 - b2) / (1 - r)
    return rho1, b1 - rho1


@sampler("unipc", family="ddpm", calls_per_step=1, options=("spacing",),
         summary="UniPC, order 2 (Zhao et al. 2023)", order=35)  # fmt: skip
@torch.no_grad()
def unipc_sample(
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

    The solver carries the last two x0 predictions and the step's correction data, nothing
    of x. A run from ``start > 0`` has none: its first step is first order and uncorrected
    (DDIM), as at the beginning of a full run, so it is bit-identical to a full run over
    ``timesteps[start:]``, not to the tail of a full run from the same x.

    Steering: the state after step i that ``callback(i, x, x0)`` sees is the predictor's
    (UniP's) x at ``timesteps[i + 1]``, with ``x0`` the prediction step i evaluated; the
    corrector of step i comes at the start of step i + 1, once the network has seen that
    point. A returned Tensor replaces the state, and the corrector then applies to it: UniC
    and UniP share their x terms and differ by a sum of model outputs only, ``Delta``, so the
    corrected state is the callback's x + ``Delta`` (``Delta`` from the evaluation at the
    callback's x). Unsteered, that is the paper's corrected state to round-off; an edit (a
    pasted region) is kept and corrected like the rest. (diffusers instead recomputes the
    corrected state from the state before the step, which drops an edit made between steps
    except through the network's output.) The carried x0 predictions stay.
    """
    ab_all, ab_prev_all = prev_alpha_bars(schedule, timesteps)
    ts = timesteps.tolist()
    m1: Tensor | None = None  # m_{i-1}: the previous step's x0 prediction
    corr: tuple[float, float, float] | None = None  # previous step's (a_i B(h), rho_1, rho_2)
    d1_prev: Tensor | None = None  # its predictor's D_1, reused by the corrector
    lam_prev = 0.0
    for i in range(check_start(start, len(ts), "timesteps"), len(ts)):
        ab, ab_next = ab_all[i].item(), ab_prev_all[i].item()
        tt = torch.full((x.shape[0],), ts[i], device=x.device, dtype=torch.long)
        m = model(x, tt)[1]  # (1) m_i = x0_hat(x~_i, t_i), at the predicted (or steered) x
        if ab_next >= 1.0:  # (2') final step: sigma = 0, x = m_i (no corrector needed)
            x = m
        else:
            if corr is not None:  # (2) UniC: x_i^c = x~_i + Delta_i (Sec. 3.1)
                a_b, rho_1, rho_c = corr
                delta = rho_c * (m - m1)  # the new point's D = m_i - m_{i-1}, r = 1
                if d1_prev is not None:  # UniC-2 also re-weights UniP-2's D_1 (1/2 -> rho_1)
                    delta = delta + (rho_1 - 0.5) * d1_prev
                x = x - a_b * delta
            lam, lam_next = half_log_snr(ab), half_log_snr(ab_next)  # (3) lambda = log(a / s)
            h = lam_next - lam  # h_{i+1} = lambda_{i+1} - lambda_i
            s, s_next, a_next = (1 - ab) ** 0.5, (1 - ab_next) ** 0.5, ab_next**0.5
            a_b = a_next * math.expm1(-h)  # a_{i+1} B(h), B(h) = e^{-h} - 1 ("bh2")
            x = (s_next / s) * x - a_b * m  # (4) UniP-1: the exponential-integrator step
            d1 = None
            if m1 is not None:  # (5) UniP-2: - a B(h) rho D_1, rho = 1/2 (Sec. 3.2)
                r = (lam_prev - lam) / h
                d1 = (m1 - m) / r
                x = x - a_b * 0.5 * d1
                corr = (a_b, *_unic2_weights(h, r))
            else:  # UniC-1 for this step: rho = 1/2
                corr = (a_b, 0.0, 0.5)
            m1, d1_prev, lam_prev = m, d1, lam
        if callback is not None:  # (6) steer: x~_{i+1} <- callback(i, x~_{i+1}, m_i)
            x = steered(x, callback(i, x, m))
    return x
