"""Converters between network parameterizations of a DDPM denoiser.

With ``x_t = a x_0 + s eps`` where ``a = sqrt(abar_t)`` and ``s = sqrt(1 - abar_t)``:

* eps-prediction (Ho et al. 2020),
* x0-prediction,
* v-prediction ``v = a eps - s x_0`` (Salimans & Ho 2022, Sec. 4),

any one of them together with ``x_t`` determines the other two. ``abar`` is \\bar\\alpha_t
broadcastable to ``x_t`` (see :meth:`DDPMSchedule.alpha_bar`).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Prediction = Literal["eps", "x0", "v"]


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
    raise ValueError(f"unknown prediction {kind!r}")
