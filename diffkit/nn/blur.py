"""A separable Gaussian blur, shared by the edit filters and the edge maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel(sigma: float, size: int) -> Tensor:
    """A normalised 1-D Gaussian (size,), size odd."""
    if size < 1 or size % 2 == 0:
        raise ValueError("the kernel size must be odd and positive")
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-0.5 * (r / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float, size: int) -> Tensor:
    """Blur (B, C, H, W) channel by channel with reflect padding; the kernel is cut to the
    image where it is larger (and renormalised), so constants stay constant."""
    kernel = gaussian_kernel(sigma, size)
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
