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
import torch.nn.functional as F
from torch import Tensor

Filter = Callable[[Tensor], Tensor]


def gaussian_kernel(sigma: float, size: int) -> Tensor:
    """A normalised 1-D Gaussian (size,), size odd."""
    if size < 1 or size % 2 == 0:
        raise ValueError("the kernel size must be odd and positive")
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    return k / k.sum()


def lowpass(sigma: float = 2.0, size: int = 33) -> Filter:
    """Separable Gaussian blur; the kernel is cut to the image where it is larger."""
    kernel = gaussian_kernel(sigma, size)

    def blur(x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = x.reshape(b * c, 1, h, w)  # (B*C, 1, H, W): one channel at a time
        for dim, n in ((-2, h), (-1, w)):
            half = min(size // 2, n - 1)
            k = kernel[size // 2 - half : size // 2 + half + 1]
            k = (k / k.sum()).to(x.dtype).to(x.device)
            shape = (1, 1, -1, 1) if dim == -2 else (1, 1, 1, -1)
            pad = (0, 0, half, half) if dim == -2 else (half, half, 0, 0)
            y = F.conv2d(F.pad(y, pad, mode="reflect"), k.reshape(shape))
        return y.reshape(b, c, h, w)

    return blur


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
