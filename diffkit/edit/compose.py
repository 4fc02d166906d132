"""Networks combined into one, like classifier-free guidance: a combinator takes the
model's ``net(x, t, cond)`` and returns another, so every sampler runs the edit.

Each combinator is linear in the network's output for fixed (x_t, t). The converters of
:mod:`diffkit.param` are affine in it too, so combining raw eps, x0 or v outputs gives the
same denoiser (tested): the combinators need not know the prediction kind. A learned
variance (:func:`~diffkit.param.split_variance`) is not a prediction: an anagram un-views
it without the views' sign flips and a factorization averages it, as the visual-anagrams
repository does on DeepFloyd IF.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from diffkit.edit.filters import Filter
from diffkit.edit.views import View
from diffkit.param import split_variance
from diffkit.samplers.guidance import batched, guided

Net = Callable[..., Tensor]


def _batch_all(conds: Sequence[Any]) -> Any:
    out = conds[0]
    for c in conds[1:]:
        out = batched(out, c)
    return out


def anagram(net: Net, conds: Sequence[Any], views: Sequence[View]) -> Net:
    """Visual anagrams (Geng et al. 2024, Eq. 3): the estimate for ``x`` is the mean over
    i of ``inverse_i(net(view_i(x), t, cond_i))``, all K views in one batched call. With
    the identity view and one condition it is the plain network."""
    if len(conds) != len(views) or not views:
        raise ValueError("an anagram needs one condition per view")
    k = len(views)
    cond = _batch_all(conds) if conds[0] is not None else None

    def forward(x: Tensor, t: Tensor, _: object = None) -> Tensor:
        xs = torch.cat([v.apply(x) for v in views])  # (K*B, ...): view i in rows i*B..
        out = net(xs, t.repeat(k), cond).chunk(k)
        preds, variances = zip(*(split_variance(o, x) for o in out), strict=True)
        pred = torch.stack([v.inverse(p) for v, p in zip(views, preds, strict=True)]).mean(0)
        if variances[0] is None:
            return pred
        var = torch.stack([v.inverse_variance(w) for v, w in zip(views, variances, strict=True)])
        return torch.cat([pred, var.mean(0)], dim=1)

    return forward


def factorized(net: Net, conds: Sequence[Any], filters: Sequence[Filter]) -> Net:
    """Factorized diffusion (Geng et al. 2024, Eq. 4): ``sum_i f_i(net(x, t, cond_i))``
    for filters that sum to the identity; a hybrid image is (lowpass, highpass)."""
    if len(conds) != len(filters) or not filters:
        raise ValueError("factorized diffusion needs one condition per filter")
    k = len(filters)
    cond = _batch_all(conds) if conds[0] is not None else None

    def forward(x: Tensor, t: Tensor, _: object = None) -> Tensor:
        out = net(x.repeat(k, *([1] * (x.ndim - 1))), t.repeat(k), cond).chunk(k)
        preds, variances = zip(*(split_variance(o, x) for o in out), strict=True)
        pred = sum(f(p) for f, p in zip(filters, preds, strict=True))
        if variances[0] is None:
            return pred  # type: ignore[return-value]
        return torch.cat([pred, torch.stack(variances).mean(0)], dim=1)  # type: ignore[list-item]

    return forward


def with_guidance(net: Net, unconditional: Callable[[Any], Any], scale: float) -> Net:
    """``net(x, t, cond)`` guided with scale ``scale`` towards ``cond`` against
    ``unconditional(cond)``, for whatever condition each call brings (a combinator's
    batched views included); unchanged for scale 1 or no condition."""

    def forward(x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
        if cond is None:
            return net(x, t, cond)
        return guided(net, cond, unconditional(cond), scale)(x, t)

    return forward
