"""Classifier-free guidance (Ho & Salimans 2022, Eq. 6), as a wrapper around a network.

``out = out_u + w (out_c - out_u)``: ``w = 1`` is the conditional model, ``w = 0`` the
unconditional one, ``w > 1`` extrapolates away from the unconditional prediction. Both
guidances here take an optional band of noise levels outside which they do nothing (the
guidance interval, Kynkäänniemi et al. 2024, "Applying guidance in a limited interval
improves sample and distribution quality in diffusion models"). Every
converter in :mod:`diffkit.param` is affine in the network output for fixed ``x_t`` and t,
so guiding the raw eps, x0 or v output is the same as guiding eps; any sampler then works.

The condition and its unconditional partner are opaque here: class labels and the null
class, a prompt's token embeddings and the empty prompt's, or a
:class:`~diffkit.models.conditioning.Cond` holding any of them; they need only be
batchable (a Tensor, or anything with ``cat``).

A learned variance (the output channels beyond the input's,
:func:`~diffkit.param.split_variance`) is not guided: it is taken from the conditional
half, as diffusers' DeepFloyd IF pipeline does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from diffkit.param import split_variance

Net = Callable[..., Tensor]
Band = Callable[[Tensor], Tensor]
"""``band(t) -> (B,) bool``: whether guidance applies at each row's time ``t`` (the guidance
interval of Kynkäänniemi et al. 2024: guide only on a band of noise levels)."""


def _within(band: Band | None, t: Tensor) -> Tensor | None:
    """(B,) bool rows inside the band, or None where every row is (no band)."""
    if band is None:
        return None
    inside = band(t)
    return None if bool(inside.all()) else inside


def _banded(inside: Tensor | None, guided: Tensor, plain: Tensor) -> Tensor:
    if inside is None:
        return guided
    return torch.where(inside.reshape(-1, *([1] * (guided.ndim - 1))), guided, plain)


def batched(a: Any, b: Any) -> Any:
    """``a`` then ``b`` along the batch: tensors are concatenated, a Cond's fields too."""
    return torch.cat([a, b]) if isinstance(a, Tensor) else a.cat(b)


def guided(net: Net, cond: Any, uncond: Any, scale: float, band: Band | None = None) -> Net:
    """A network ``(x, t, _=None) -> out`` that ignores its own condition argument and
    returns the guided prediction for ``cond`` against ``uncond``, both halves in one
    batched forward pass. Outside ``band`` it is the conditional prediction; a step
    outside it altogether costs one evaluation, not two."""

    def forward(x: Tensor, t: Tensor, _: object = None) -> Tensor:
        if scale == 1.0:
            return net(x, t, cond)
        inside = _within(band, t)
        if inside is not None and not bool(inside.any()):
            return net(x, t, cond)
        if scale == 0.0:
            return _banded(inside, net(x, t, uncond), net(x, t, cond)) if inside is not None \
                else net(x, t, uncond)  # fmt: skip
        out = net(torch.cat([x, x]), torch.cat([t, t]), batched(cond, uncond))
        (pred_c, v_c), (pred_u, _) = (split_variance(o, x) for o in out.chunk(2))  # (B, ...)
        pred = _banded(inside, pred_u + scale * (pred_c - pred_u), pred_c)
        return pred if v_c is None else torch.cat([pred, v_c], dim=1)

    return forward


def autoguided(net: Net, guide: Net, cond: Any, scale: float, band: Band | None = None) -> Net:
    """Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of
    Itself", Eq. 2): ``out = out_g + w (out - out_g)``, the model extrapolated away from a
    weaker version of itself (``guide``: an earlier snapshot, a smaller or shorter-trained
    run of the same recipe) under the same condition ``cond`` (None: unconditional).
    ``w = 1`` is the model alone. Both networks must speak the same parametrization (the
    pipeline checks it), so mixing raw outputs mixes the predictions; a learned variance
    comes from the model. Outside ``band`` it is the model alone (the guide not called when
    no row is inside)."""

    def forward(x: Tensor, t: Tensor, _: object = None) -> Tensor:
        out = net(x, t, cond)
        inside = _within(band, t)
        if scale == 1.0 or (inside is not None and not bool(inside.any())):
            return out
        (pred, var), (weak, _) = split_variance(out, x), split_variance(guide(x, t, cond), x)
        pred = _banded(inside, weak + scale * (pred - weak), pred)  # (B, ...)
        return pred if var is None else torch.cat([pred, var], dim=1)

    return forward
