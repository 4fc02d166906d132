"""The editing loops over a pipeline: forward noise, a one-step x0 estimate, SDEdit (Meng
et al. 2021) and inpainting (Lugmayr et al. 2022, without resampling so far).

Each loop is a short function over :meth:`Pipeline.generate`'s steering (``start``, a
callback that may replace x) on the pipeline's grid (:meth:`grid`): grid point k of a DDPM
is timestep ``grid[k]``, of a flow the time ``grid[k]``; the point after the last is clean
data. Images are (B, C, H, W) in [-1, 1] in the model's space (pixels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypedDict, Unpack

import torch
from torch import Tensor

from diffkit.methods.pipeline import Pipeline, SampleOptions, Steer
from diffkit.models.conditioning import Cond


def noised(pipe: Pipeline, images: Tensor, point: Tensor | float, noise: Tensor) -> Tensor:
    """q(x_t | x_0) at one grid point: a DDPM timestep (``sqrt(abar) x0 + sqrt(1 - abar)
    eps``, DDPM Eq. 4) or a flow time (``t x_1 + (1 - t) x_0``, noise at t = 0)."""
    return pipe.noised(images, point, noise)


def _seeded(pipe: Pipeline, shape: torch.Size, seed: int):
    """The CPU generator, its first draw (the initial noise, the same on any device) and
    the device generator a sampler draws from, as :meth:`Pipeline.sample_batches` seeds
    them."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=g)
    return g, noise, torch.Generator(pipe.device).manual_seed(seed + 1)


def _checked_start(pipe: Pipeline, steps: int, start: int) -> Tensor:
    grid = pipe.grid(steps)
    last = steps - 1  # the last grid point a run can start from
    if not 0 <= start <= last:
        raise ValueError(f"start must be between 0 and {last} for {steps} steps")
    return grid


class Sampling(TypedDict, total=False):
    """How :func:`sdedit` and :func:`inpaint` sample, every key optional: ``sampler`` (the
    pipeline's default), ``steps`` (50), ``cond`` and ``guidance`` (1: the plain
    conditional model), ``seed`` (0), ``opts`` (:class:`SampleOptions`) and ``on_step()``
    after every step."""

    sampler: str | None
    steps: int
    cond: Cond | None
    guidance: float
    seed: int
    opts: SampleOptions | None
    on_step: Callable[[], None] | None


STEPS = 50  # the steps of an editing loop when none are given


def _generate(pipe: Pipeline, x: Tensor, gen: torch.Generator, run: Sampling, *,
              start: int = 0, callback: Steer | None = None) -> Tensor:  # fmt: skip
    """``pipe.generate`` from ``x`` as ``run`` asks, steered by ``start`` and ``callback``:
    float32 on the CPU."""
    unknown = run.keys() - Sampling.__optional_keys__
    if unknown:
        raise TypeError(f"unexpected keyword argument {sorted(unknown)[0]!r}")
    sampler = run.get("sampler") or pipe.DEFAULT_SAMPLER
    out, _ = pipe.generate(x, sampler, run.get("steps", STEPS), cond=run.get("cond"),
                           guidance=run.get("guidance", 1.0), opts=run.get("opts"),
                           generator=gen, on_step=run.get("on_step"), start=start,
                           callback=callback)  # fmt: skip
    return out.float().cpu()


@torch.no_grad()
def sdedit(pipe: Pipeline, images: Tensor, start: int, **run: Unpack[Sampling]) -> Tensor:
    """Image-to-image: noise ``images`` to grid point ``start`` and run the rest of the
    grid. ``start = 0`` is plain sampling (the image is lost in pure noise); larger
    ``start`` keeps more of it."""
    grid = _checked_start(pipe, run.get("steps", STEPS), start)
    _, noise, gen = _seeded(pipe, images.shape, run.get("seed", 0))
    x = noise if start == 0 else noised(pipe, images.cpu(), grid[start], noise)
    return _generate(pipe, x, gen, run, start=start)


@torch.no_grad()
def inpaint(pipe: Pipeline, images: Tensor, mask: Tensor, **run: Unpack[Sampling]) -> Tensor:
    """Regenerate where ``mask`` (B or 1, 1 or C, H, W) is 1 and keep ``images`` where it
    is 0: after every step the known region is replaced by the original noised to the
    next grid point with fresh noise, ``x <- m x + (1 - m) q(x_orig, t')``, and pasted
    exactly at the end, so outside the mask the output equals the input."""
    steps = run.get("steps", STEPS)
    grid = pipe.grid(steps)
    g, noise, gen = _seeded(pipe, images.shape, run.get("seed", 0))
    m = mask.to(pipe.device, images.dtype)
    known = images.to(pipe.device)

    def paste(i: int, x: Tensor) -> Tensor:
        if i == steps - 1:  # clean data: the original, exactly
            return m * x + (1 - m) * known
        fresh = torch.randn(images.shape, generator=g).to(pipe.device)
        return m * x + (1 - m) * noised(pipe, known, grid[i + 1], fresh)

    return _generate(pipe, noise, gen, run, callback=paste)


@torch.no_grad()
def repaint(
    pipe: Pipeline,
    images: Tensor,
    mask: Tensor,
    *,
    steps: int = STEPS,
    jump: int = 10,
    resample: int = 10,
    cond: Cond | None = None,
    guidance: float = 1.0,
    seed: int = 0,
    on_step: Callable[[], None] | None = None,
) -> Tensor:
    """:func:`inpaint` with RePaint's resampling (:mod:`diffkit.edit.repaint`), where the
    pipeline's family can walk back along its forward process
    (:meth:`~diffkit.methods.pipeline.Pipeline.resampler`: a DDPM, with ancestral steps
    only; a flow inpaints by replacement)."""
    resample_from = pipe.resampler(steps)
    _, noise, gen = _seeded(pipe, images.shape, seed)
    out = resample_from(pipe.network(cond, guidance), noise.to(pipe.device),
                        images.to(pipe.device), mask, jump=jump, resample=resample,
                        generator=gen, on_move=on_step)  # fmt: skip
    return out.float().cpu()
