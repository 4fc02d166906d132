"""ControlNet training losses (Zhang, Rao and Agrawala 2023, Eq. 2): the frozen base model's
own loss, with the hint as an extra input of the network being trained.

A training batch packs each item's target and its hint into one row, (B, D + D_hint)
(see :func:`pack_hints`), so the shared loop, its shuffling and its exact resume handle
hints like any other data. Hints are stored as ``2 h - 1`` so that uint8 pixel batches,
which the loader maps to [-1, 1], and float latent batches unpack the same way.

* :class:`HintedObjective`: the base's DDPM (eps / x0 / v, Min-SNR) or flow loss, where
  the network is ``net(x_t, t, labels, hint)``.
* :class:`ReconObjective`: a baseline: the network sees a blank (zero) input at
  the noise end of the process and its data estimate there is fitted to the image with an
  L1 loss; what it learns is a deterministic map from edges to digits, with no diversity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from diffkit.objectives.ddpm import DDPMObjective
from diffkit.objectives.flow import FlowObjective
from diffkit.param import network_input, split_prediction
from diffkit.samplers.common import NET_TIME_SCALE


def pack_hints(x: Tensor, hints: Tensor) -> Tensor:
    """Targets (N, *shape) and hints (N, C_h, H, W) in [0, 1] -> rows (N, D + D_hint).

    uint8 images stay uint8 (the hint quantised to 1/255: exact for Canny's 0/1 maps);
    float data (latents) get float hints."""
    n = x.shape[0]
    if x.dtype == torch.uint8:
        h = (hints * 255).round().to(torch.uint8)  # the loader maps v to v / 127.5 - 1
    else:
        h = (2 * hints - 1).to(x.dtype)
    return torch.cat([x.reshape(n, -1), h.reshape(n, -1)], dim=1)


def unpack_hints(
    rows: Tensor, shape: tuple[int, ...], hint_shape: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    """A loader batch (B, D + D_hint), already in [-1, 1] units -> (x (B, *shape), hints
    (B, *hint_shape) in [0, 1])."""
    b, d = rows.shape[0], math.prod(shape)
    x = rows[:, :d].reshape(b, *shape)  # (B, C, H, W) or (B, D) latents
    hint = (rows[:, d:].reshape(b, *hint_shape) + 1) / 2  # (B, C_h, H, W)
    return x, hint


@dataclass(frozen=True)
class HintedObjective:
    """The base model's loss (``base``: its DDPMObjective or FlowObjective, label dropping
    included) for ``net(x, t, labels, hint)``."""

    base: DDPMObjective | FlowObjective
    shape: tuple[int, ...]  # one target: an image or a latent
    hint_shape: tuple[int, ...]

    def __call__(
        self, net: nn.Module, rows: Tensor, labels: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        x, hint = unpack_hints(rows, self.shape, self.hint_shape)
        return self.base(lambda xt, t, c: net(xt, t, c, hint), x, labels, generator)


@dataclass(frozen=True)
class ReconObjective:
    """L1 between the image and the data estimate of ``net`` at a blank input at the noise
    end: x_T = 0 at t = T - 1 for a DDPM (its x0 prediction), x_0 = 0 at t = 0 for a flow
    (``0 + v``, one Euler step). One-step DDIM or Euler from zeros samples it exactly."""

    base: DDPMObjective | FlowObjective
    shape: tuple[int, ...]
    hint_shape: tuple[int, ...]

    def __call__(
        self, net: nn.Module, rows: Tensor, labels: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        x, hint = unpack_hints(rows, self.shape, self.hint_shape)
        cond = self.base.labels(labels, generator)
        blank = torch.zeros_like(x)
        b = x.shape[0]
        if isinstance(self.base, DDPMObjective):
            sched = self.base.schedule
            t = torch.full((b,), sched.num_steps - 1, device=x.device, dtype=torch.long)
            abar = sched.alpha_bar(t, x.ndim, x.dtype)
            out = net(network_input(self.base.prediction, blank, abar), t, cond, hint)
            _, estimate = split_prediction(out.float(), self.base.prediction, blank, abar)
        else:
            t = torch.zeros(b, device=x.device, dtype=x.dtype)
            estimate = blank + net(blank, t * NET_TIME_SCALE, cond, hint).float()
        return (estimate - x.float()).abs().mean()
