"""Classifier-free guidance (Ho & Salimans 2022, Eq. 6), as a wrapper around a network.

``out = out_u + w (out_c - out_u)``: ``w = 1`` is the conditional model, ``w = 0`` the
unconditional one, ``w > 1`` extrapolates away from the unconditional prediction. Every
converter in :mod:`diffkit.param` is affine in the network output for fixed ``x_t`` and t,
so guiding the raw eps, x0 or v output is the same as guiding eps; any sampler then works.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Net = Callable[..., Tensor]


def guided(net: Net, labels: Tensor, null_label: int, scale: float) -> Net:
    """A network ``(x, t, cond=None) -> out`` that ignores ``cond`` and returns the guided
    prediction for ``labels`` (B,), with both halves in one batched forward pass."""

    def forward(x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        y = labels.to(x.device)
        null = torch.full_like(y, null_label)
        if scale == 1.0:
            return net(x, t, y)
        if scale == 0.0:
            return net(x, t, null)
        out = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        out_c, out_u = out.chunk(2)
        return out_u + scale * (out_c - out_u)

    return forward
