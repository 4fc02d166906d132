"""Single-step operations: a one-step estimate of the clean image, the classical blur
baseline, and iterative denoising from a noisy image (the seeds' "denoise" comparison)."""

from __future__ import annotations

import torch
from torch import Tensor

from diffkit.edit.filters import lowpass
from diffkit.methods.pipeline import Pipeline
from diffkit.models.conditioning import Cond
from diffkit.models.contract import DDPMModel


@torch.no_grad()
def one_step_x0(
    pipe: Pipeline, xt: Tensor, point: float, cond: Cond | None = None, guidance: float = 1.0
) -> Tensor:
    """The model's estimate of x_0 from ``xt`` at one grid point, in one network call:
    Tweedie's ``(x_t - sqrt(1 - abar) eps) / sqrt(abar)`` for a DDPM (timestep
    ``point``), ``x_t + (1 - t) v`` for a flow (time ``point``)."""
    x = xt.to(pipe.device)
    if isinstance(pipe.model, DDPMModel):
        t = torch.full((x.shape[0],), int(point), device=pipe.device, dtype=torch.long)
        x0 = pipe.denoiser(pipe.network(cond, guidance))(x, t)[1]  # type: ignore[attr-defined]
        return x0.float().cpu()
    velocity = pipe.velocity(cond, guidance)  # type: ignore[attr-defined]
    tau = torch.full((x.shape[0],), float(point), device=pipe.device)
    return (x + (1 - float(point)) * velocity(x, tau)).float().cpu()


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
