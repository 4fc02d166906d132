"""Networks combined into one, like classifier-free guidance: a combinator takes the
model's ``net(x, t, cond)`` and returns another, so every sampler runs the edit.

Each combinator is linear in the network's output for fixed (x_t, t). The converters of
:mod:`diffkit.param` are affine in it too, so combining raw eps, x0 or v outputs gives the
same denoiser (tested): the combinators need not know the prediction kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from diffkit.edit.filters import Filter
from diffkit.edit.views import View
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
        return torch.stack([v.inverse(o) for v, o in zip(views, out, strict=True)]).mean(0)

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
        return sum(f(o) for f, o in zip(filters, out, strict=True))  # type: ignore[return-value]

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
