"""Protocols shared across diffkit: what a network and a denoiser look like."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from diffkit.samplers.common import Denoiser, StepCallback


class Network(Protocol):
    """``net(x: (B, C, H, W) or (B, D), t: (B,), cond) -> same shape as x``."""

    def __call__(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor: ...


__all__ = ["Denoiser", "Network", "StepCallback"]
