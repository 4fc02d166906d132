"""Single-step operations: a one-step estimate of the clean image, the classical blur
baseline, and iterative denoising from a noisy image (CS180's "denoise" comparison)."""

from __future__ import annotations

import torch
from torch import Tensor

from diffkit.edit.filters import lowpass
from diffkit.methods.pipeline import Pipeline
from diffkit.models.conditioning import Cond


@torch.no_grad()
def one_step_x0(
    pipe: Pipeline, xt: Tensor, point: float, cond: Cond | None = None, guidance: float = 1.0
) -> Tensor:
    """The model's estimate of x_0 from ``xt`` at one grid point, in one network call:
    Tweedie's ``(x_t - sqrt(1 - abar) eps) / sqrt(abar)`` for a DDPM (timestep
    ``point``), ``x_t + (1 - t) v`` for a flow (time ``point``)."""
    x0 = pipe.one_step_x0(xt.to(pipe.device), point, pipe.network(cond, guidance))
    return x0.float().cpu()


def best_blur(
    noisy: Tensor, clean: Tensor, sigmas=(0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
) -> tuple[Tensor, float]:
    """The classical baseline: the Gaussian blur (kernel ``6 sigma + 1``) with the least
    MSE to ``clean`` among ``sigmas``, and its sigma (an oracle choice, as a bound)."""
    best = None
    for s in sigmas:
        size = 2 * int(3 * s) + 1
        out = lowpass(s, size)(noisy)
        err = float((out - clean).pow(2).mean())
        if best is None or err < best[0]:
            best = (err, out, s)
    assert best is not None
    return best[1], best[2]
