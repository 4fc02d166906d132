"""Denoising benchmarks: PSNR / MSE of denoisers across noise levels, the classical and
oracle baselines, and denoising pure noise.

Noise levels are sigma on images in [0, 1]; the images are diffkit's, in
[-1, 1], where the noise std is 2 sigma. MSE and PSNR are reported in [0, 1] units
(``mse = mean((x_hat - x)^2) / 4``, ``psnr = -10 log10(mse)``), as images in [0, 1] are.

* :func:`blur_denoiser`: the best Gaussian blur at each sigma, its width picked on
  held-out images from a fixed list (0 = no blur).
* :func:`oracle_denoiser`: the empirical-Bayes posterior mean under the training set as
  the prior, ``sum_i w_i x_i`` with ``w = softmax(-|y - x_i|^2 / (2 s^2))``: the best any
  denoiser can do if the data were exactly the training images. sigma -> 0 gives the
  nearest training image (the input itself, for a training image); sigma -> infinity
  their mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffkit.methods.denoiser import Denoiser
from diffkit.nn.blur import gaussian_blur
from diffkit.objectives.denoise import image_sigma

BLUR_WIDTHS = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


def mse01(x_hat: Tensor, x: Tensor) -> Tensor:
    """Per-image MSE (B,) in [0, 1] units of images given in [-1, 1]."""
    return (x_hat.float() - x.float()).pow(2).flatten(1).mean(1) / 4


PSNR_EXACT = 120.0  # the PSNR reported for an exact output (MSE 0, e.g. sigma 0 returned as is)


def psnr(mse: float) -> float:
    return -10 * math.log10(max(mse, 10 ** (-PSNR_EXACT / 10)))


def _blur(y: Tensor, width: float) -> Tensor:
    return y if width == 0 else gaussian_blur(y, width, 2 * math.ceil(3 * width) + 1)


def blur_denoiser(held_out: Tensor, seed: int = 1) -> tuple[Denoiser, dict[float, float]]:
    """The best Gaussian blur per sigma, chosen by MSE on ``held_out`` (N, C, H, W) images in
    [-1, 1] noised with its own seed (so the choice never sees the test noise); also the
    widths it picks, filled as sigmas are asked for."""
    chosen: dict[float, float] = {}

    def width(sigma: float) -> float:
        if sigma not in chosen:
            g = torch.Generator().manual_seed(seed)
            y = held_out + image_sigma(sigma) * torch.randn(held_out.shape, generator=g)
            errors = [float(mse01(_blur(y, w), held_out).mean()) for w in BLUR_WIDTHS]
            chosen[sigma] = BLUR_WIDTHS[min(range(len(errors)), key=errors.__getitem__)]
        return chosen[sigma]

    def fn(y: Tensor, sigma: float) -> Tensor:
        return _blur(y, width(sigma))

    return Denoiser("best blur", fn, "blur"), chosen


def oracle_denoiser(train: Tensor, chunk: int = 256) -> Denoiser:
    """The posterior mean under the empirical distribution of ``train`` (N, C, H, W) in
    [-1, 1]; sigma 0 returns the nearest training image."""
    flat = train.flatten(1).float()  # (N, D)
    sq = flat.pow(2).sum(1)  # (N,)

    @torch.no_grad()
    def fn(y: Tensor, sigma: float) -> Tensor:
        out = []
        s2 = image_sigma(sigma) ** 2
        for part in y.flatten(1).float().split(chunk):  # (b, D)
            d2 = part.pow(2).sum(1, keepdim=True) - 2 * part @ flat.T + sq  # (b, N)
            if s2 == 0:
                w = torch.zeros_like(d2).scatter_(1, d2.argmin(1, keepdim=True), 1.0)
            else:
                w = torch.softmax(-d2 / (2 * s2), dim=1)
            out.append(w @ flat)  # (b, D)
        return torch.cat(out).reshape(y.shape)

    return Denoiser("oracle (training set)", fn, "oracle")


@dataclass
class DenoisePoint:
    model: str
    sigma: float
    mse: float  # [0, 1] units
    psnr: float  # PSNR_EXACT for an exact output
    accuracy: float | None  # the classifier's accuracy on the denoised digits
    n: int = 0  # images


def noisy_set(x: Tensor, sigma: float, seed: int) -> Tensor:
    """``x + 2 sigma eps`` with noise from a CPU generator seeded by (seed, sigma), the same
    for every model."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + round(sigma * 1000))
    return x + image_sigma(sigma) * torch.randn(x.shape, generator=g)


@torch.no_grad()
def run_bench(
    denoisers: Sequence[Denoiser],
    x: Tensor,
    labels: Tensor | None,
    sigmas: Sequence[float],
    *,
    classify=None,
    seed: int = 0,
    batch_size: int = 500,
    on_point=lambda p: None,
) -> tuple[list[DenoisePoint], dict[float, Tensor]]:
    """Every denoiser at every sigma on ``x`` (n, C, H, W) in [-1, 1]: points, and per sigma
    a grid stack (clean, noisy, then each model's first 10 outputs)."""
    points, grids = [], {}
    for sigma in sigmas:
        y = noisy_set(x, sigma, seed)
        rows = [x[:10], y[:10].clamp(-1, 1)]
        for d in denoisers:
            out = torch.cat([d(part, sigma).cpu().float() for part in y.split(batch_size)])
            acc = None
            if classify is not None and labels is not None:
                acc = float((classify(out.clamp(-1, 1)) == labels).float().mean())
            mse = float(mse01(out, x).mean())
            point = DenoisePoint(d.name, sigma, mse, psnr(mse), acc, x.shape[0])
            points.append(point)
            on_point(point)
            rows.append(out[:10].clamp(-1, 1))
        grids[sigma] = torch.cat(rows)
    return points, grids


@torch.no_grad()
def pure_noise(
    denoisers: Sequence[Denoiser], shape: tuple[int, ...], mean: Tensor, sigma: float,
    n: int = 64, seed: int = 0,
) -> tuple[list[dict[str, Any]], Tensor]:  # fmt: skip
    """Each denoiser applied to pure noise (denoising pure noise: N(0, 1) in [0, 1]
    units, i.e. ``2 z - 1`` here) at ``sigma``: the RMS distance of its outputs to the data
    mean and their pixel std across the ``n`` draws, in [0, 1] units; and a grid, one row
    per model: the mean digit, then its first 8 outputs (save with ``nrow=9``)."""
    g = torch.Generator().manual_seed(seed)
    z = 2 * torch.randn(n, *shape, generator=g) - 1
    out, rows = [], []
    for d in denoisers:
        dz = d(z, sigma).cpu().float().clamp(-1, 1)
        dist = float(mse01(dz, mean.expand_as(dz)).mean().sqrt())
        spread = float((dz / 2).std(dim=0).mean())
        out.append({"model": d.name, "rms_to_mean": dist, "spread": spread})
        rows += [mean[None], dz[:8]]
    return out, torch.cat(rows)


def plot_psnr(points: Sequence[DenoisePoint], path: Path, train_sigma: float | None = None) -> None:
    """PSNR against sigma, one line per model (the out-of-distribution curve)."""
    from diffkit.runs.plots import new_figure, save_figure

    fig, ax = new_figure(figsize=(8, 5))
    for name in dict.fromkeys(p.model for p in points):
        pts = [p for p in points if p.model == name and p.psnr < PSNR_EXACT]  # exact: off scale
        ax.plot([p.sigma for p in pts], [p.psnr for p in pts], "o-", label=name)
    if train_sigma is not None:
        ax.axvline(train_sigma, ls="--", c="gray", label=f"training sigma {train_sigma:g}")
    sig = sorted({p.sigma for p in points})
    ax.set(xlabel="noise sigma (images in [0, 1])", ylabel="PSNR (dB)", xticks=sig,
           title=f"denoising {points[0].n if points else 0} images at {len(sig)} noise levels "
                 "(exact outputs not drawn)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def as_dicts(points: Sequence[DenoisePoint]) -> list[dict[str, Any]]:
    return [asdict(p) for p in points]
