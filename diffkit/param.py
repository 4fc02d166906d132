"""Converters between network parameterizations of a DDPM denoiser.

With ``x_t = a x_0 + s eps`` where ``a = sqrt(abar_t)`` and ``s = sqrt(1 - abar_t)``:

* eps-prediction (Ho et al. 2020),
* x0-prediction,
* v-prediction ``v = a eps - s x_0`` (Salimans & Ho 2022, Sec. 4),
* ``edm``: the preconditioned output F of Karras et al. 2022 (Table 1, "Ours"), whose
  denoiser is ``x0 = c_skip x_t + c_out F(c_in x_t)`` with the data std ``sigma_data``,

any one of them together with ``x_t`` determines the other two. ``abar`` is \\bar\\alpha_t
broadcastable to ``x_t`` (see :meth:`DDPMSchedule.alpha_bar`).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Prediction = Literal["eps", "x0", "v", "edm"]

EDM_SIGMA_DATA = 0.5
"""EDM's data standard deviation (Karras et al. 2022, Sec. 5), the value it uses on every
image dataset; MNIST scaled to [-1, 1] has std 0.62."""


def edm_coefficients(abar: Tensor, sigma_data: float = EDM_SIGMA_DATA) -> tuple[Tensor, ...]:
    """EDM's ``(c_in, c_skip, c_out)`` moved to the variance-preserving ``x_t``.

    EDM writes ``x = x_0 + sigma n`` with ``D(x) = c_skip(sigma) x + c_out(sigma)
    F(c_in(sigma) x)``, ``c_in = 1 / r'``, ``c_skip = sigma_d^2 / r'^2``, ``c_out = sigma
    sigma_d / r'`` and ``r' = sqrt(sigma^2 + sigma_d^2)``. A DDPM state is ``x_t = a x``
    with ``sigma = s / a``; substituting, with ``r = sqrt(s^2 + a^2 sigma_d^2) = a r'``:
    the network sees ``x_t / r`` and ``x0 = (a sigma_d^2 / r^2) x_t + (s sigma_d / r) F``.
    EDM's loss weight 1 / c_out^2 on the x0 error is a unit weight on F.
    """
    a, s = abar.sqrt(), (1 - abar).sqrt()
    r = (s.square() + (a * sigma_data).square()).sqrt()
    return 1 / r, a * sigma_data**2 / r.square(), s * sigma_data / r


def network_input(kind: Prediction, xt: Tensor, abar: Tensor) -> Tensor:
    """What the network of parameterization ``kind`` is fed for ``x_t``: ``c_in x_t`` for
    ``edm``, ``x_t`` itself for the others."""
    if kind == "edm":
        return xt * edm_coefficients(abar)[0].to(xt.dtype)
    return xt


def eps_to_x0(eps: Tensor, xt: Tensor, abar: Tensor) -> Tensor:
    return (xt - (1 - abar).sqrt() * eps) / abar.sqrt()


def x0_to_eps(x0: Tensor, xt: Tensor, abar: Tensor) -> Tensor:
    return (xt - abar.sqrt() * x0) / (1 - abar).sqrt()


def v_to_x0(v: Tensor, xt: Tensor, abar: Tensor) -> Tensor:
    return abar.sqrt() * xt - (1 - abar).sqrt() * v


def v_to_eps(v: Tensor, xt: Tensor, abar: Tensor) -> Tensor:
    return (1 - abar).sqrt() * xt + abar.sqrt() * v


def to_v(eps: Tensor, x0: Tensor, abar: Tensor) -> Tensor:
    return abar.sqrt() * eps - (1 - abar).sqrt() * x0


def split_variance(out: Tensor, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """A network output ``out`` for input ``x`` (B, C, ...) as (prediction, learned
    variance): a network with a learned variance outputs 2C channels, the prediction first
    and a per-pixel interpolation weight v in [-1, 1] after it (Nichol & Dhariwal 2021,
    Eq. 15, in diffusers' ``learned_range`` convention); any other output is all
    prediction (v None)."""
    if out.shape[1] == 2 * x.shape[1]:
        pred, v = out.chunk(2, dim=1)  # (B, C, ...) each
        return pred, v
    return out, None


def split_prediction(
    pred: Tensor, kind: Prediction, xt: Tensor, abar: Tensor
) -> tuple[Tensor, Tensor]:
    """Return ``(eps, x0)`` from a raw network output of the given parameterization."""
    match kind:
        case "eps":
            return pred, eps_to_x0(pred, xt, abar)
        case "x0":
            return x0_to_eps(pred, xt, abar), pred
        case "v":
            return v_to_eps(pred, xt, abar), v_to_x0(pred, xt, abar)
        case "edm":
            _, c_skip, c_out = edm_coefficients(abar)
            x0 = c_skip * xt + c_out * pred
            return x0_to_eps(x0, xt, abar), x0
    raise ValueError(f"unknown prediction {kind!r}")


def training_target(kind: Prediction, x0: Tensor, eps: Tensor, abar: Tensor) -> Tensor:
    """What a network of parameterization ``kind`` should output for (x0, eps)."""
    match kind:
        case "eps":
            return eps
        case "x0":
            return x0
        case "v":
            return to_v(eps, x0, abar)
        case "edm":  # F = (x0 - c_skip x_t) / c_out = (s x0 - a sigma_d^2 eps) / (sigma_d r)
            a, s, sd = abar.sqrt(), (1 - abar).sqrt(), EDM_SIGMA_DATA
            r = (s.square() + (a * sd).square()).sqrt()
            return (s * x0 - a * sd**2 * eps) / (sd * r)
    raise ValueError(f"unknown prediction {kind!r}")
