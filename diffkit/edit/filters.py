"""Filters that split an image into parts summing to the image itself, for hybrid images
(Oliva et al. 2006) and factorized diffusion (Geng et al. 2024, "Factorized Diffusion").

A filter is a linear map on (B, C, H, W). :func:`lowpass` is a separable Gaussian blur with
reflect padding; :func:`highpass` is the identity minus it, so the two sum to the identity
exactly (up to float round-off).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
from torch import Tensor

from diffkit.nn.blur import gaussian_blur, gaussian_kernel

__all__ = ["Filter", "bands", "check_partition", "color_split", "gaussian_kernel", "gray",
           "highpass", "lowpass"]  # fmt: skip

Filter = Callable[[Tensor], Tensor]


def lowpass(sigma: float = 2.0, size: int = 33) -> Filter:
    """Separable Gaussian blur; the kernel is cut to the image where it is larger."""
    gaussian_kernel(sigma, size)  # checked now, not at the first call
    return lambda x: gaussian_blur(x, sigma, size)


def highpass(sigma: float = 2.0, size: int = 33) -> Filter:
    """The identity minus :func:`lowpass` with the same parameters."""
    low = lowpass(sigma, size)
    return lambda x: x - low(x)


def check_partition(filters: Sequence[Filter], shape: tuple[int, ...], atol: float = 1e-5) -> None:
    """ValueError unless the filters sum to the identity on images of ``shape`` (C, H, W)."""
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    total = sum(f(x) for f in filters)
    if not torch.allclose(total, x, atol=atol):  # type: ignore[arg-type]
        raise ValueError("the filters do not sum to the identity")


def bands(sigmas: Sequence[float], size: int = 33) -> list[Filter]:
    """len(sigmas) + 1 frequency bands, coarsest first, for strictly decreasing ``sigmas``:
    ``lowpass(s_1)``, then ``lowpass(s_k) - lowpass(s_{k-1})``, then the identity minus
    ``lowpass(s_last)``. Telescoping, they sum to the identity."""
    if any(b >= a for a, b in pairwise(sigmas)) or not sigmas:
        raise ValueError("band sigmas must be given and strictly decreasing (coarse first)")
    lows = [lowpass(s, size) for s in sigmas]
    out: list[Filter] = [lows[0]]
    out += [lambda x, a=a, b=b: b(x) - a(x) for a, b in pairwise(lows)]
    out.append(lambda x: x - lows[-1](x))
    return out


def gray(x: Tensor) -> Tensor:
    """Each pixel's channel mean, in every channel: the grayscale part of an image. It is
    an orthogonal projection, so gray and ``x - gray(x)`` (the colour) sum to ``x``."""
    return x.mean(dim=1, keepdim=True).expand_as(x)


def color_split() -> list[Filter]:
    """(grayscale, colour): factorized diffusion's colour hybrids (Geng et al. 2024)."""
    return [gray, lambda x: x - gray(x)]
