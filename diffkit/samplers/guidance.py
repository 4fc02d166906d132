"""Classifier-free guidance (Ho & Salimans 2022, Eq. 6), as a wrapper around a network.

``out = out_u + w (out_c - out_u)``: ``w = 1`` is the conditional model, ``w = 0`` the
unconditional one, ``w > 1`` extrapolates away from the unconditional prediction. Every
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


def batched(a: Any, b: Any) -> Any:
    """``a`` then ``b`` along the batch: tensors are concatenated, a Cond's fields too."""
    return torch.cat([a, b]) if isinstance(a, Tensor) else a.cat(b)


def guided(net: Net, cond: Any, uncond: Any, scale: float) -> Net:
    """A network ``(x, t, _=None) -> out`` that ignores its own condition argument and
    returns the guided prediction for ``cond`` against ``uncond``, both halves in one
    batched forward pass."""

    def forward(x: Tensor, t: Tensor, _: object = None) -> Tensor:
        if scale == 1.0:
            return net(x, t, cond)
        if scale == 0.0:
            return net(x, t, uncond)
        out = net(torch.cat([x, x]), torch.cat([t, t]), batched(cond, uncond))
        (pred_c, v_c), (pred_u, _) = (split_variance(o, x) for o in out.chunk(2))  # (B, ...)
        pred = pred_u + scale * (pred_c - pred_u)
        return pred if v_c is None else torch.cat([pred, v_c], dim=1)

    return forward
