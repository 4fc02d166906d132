"""Edge maps of images, in pure torch: hints for a ControlNet.

Images are (B, C, H, W) in [-1, 1], as everywhere in diffkit; edge maps are (B, 1, H, W)
in [0, 1], computed on the channel mean.

* :func:`sobel`: the gradient magnitude of the 3 x 3 Sobel operator, scaled by 1/4 so that
  a unit step in intensity (0 -> 1, i.e. -1 -> 1 in image units) gives 1 on the two pixels
  beside it, and clamped to [0, 1].
* :func:`canny`: Canny (1986): Gaussian smoothing, Sobel gradients, non-maximum suppression
  along the gradient direction quantised to the 8 neighbours, double threshold and
  hysteresis (weak pixels kept where 8-connected to strong ones). A binary map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from diffkit.nn.blur import gaussian_blur

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4


def _intensity(images: Tensor) -> Tensor:
    """(B, C, H, W) in [-1, 1] -> (B, 1, H, W) in [0, 1]."""
    return (images.float().mean(dim=1, keepdim=True) + 1) / 2


def gradients(u: Tensor) -> tuple[Tensor, Tensor]:
    """Sobel d/dx and d/dy of (B, 1, H, W) intensities, replicate-padded at the border."""
    kx = SOBEL_X.to(u)[None, None]  # (1, 1, 3, 3)
    padded = F.pad(u, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kx), F.conv2d(padded, kx.transpose(-2, -1))


def sobel(images: Tensor) -> Tensor:
    """The Sobel gradient magnitude, (B, 1, H, W) in [0, 1]."""
    gx, gy = gradients(_intensity(images))
    return torch.hypot(gx, gy).clamp(0, 1)


def canny(images: Tensor, low: float = 0.1, high: float = 0.2, sigma: float = 1.0) -> Tensor:
    """Canny edges, (B, 1, H, W) with values 0 or 1. ``low`` and ``high`` are thresholds on
    the Sobel magnitude (a unit step gives 1 before smoothing); ``sigma`` is the
    smoothing (0: none)."""
    if not 0 <= low <= high:
        raise ValueError(f"canny thresholds need 0 <= low <= high, got {low} and {high}")
    u = _intensity(images)
    if sigma > 0:
        u = gaussian_blur(u, sigma, 2 * math.ceil(3 * sigma) + 1)
    gx, gy = gradients(u)
    mag = torch.hypot(gx, gy)
    # (1) the gradient direction (uphill, towards brighter pixels; y grows downwards),
    # quantised to the 8 neighbours
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 360
    sector = torch.round(angle / 45).long() % 8
    # (2) non-maximum suppression along it. A step's magnitude is symmetric about the step,
    # so the two pixels beside it tie: the brighter side wins (a pixel must beat the one
    # uphill and at least equal the one downhill), with a tolerance so that round-off does
    # not pick a side at random. Edges are one pixel wide, on the bright side.
    padded = F.pad(mag, (1, 1, 1, 1))
    h, w = mag.shape[-2:]
    tol = 1e-5 * mag.amax(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1): per image

    def shifted(dy: int, dx: int) -> Tensor:  # the neighbour at (y + dy, x + dx)
        return padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    keep = torch.zeros_like(mag, dtype=torch.bool)
    for k in range(8):
        dx, dy = round(math.cos(math.radians(45 * k))), round(math.sin(math.radians(45 * k)))
        uphill, downhill = shifted(dy, dx), shifted(-dy, -dx)
        keep |= (sector == k) & (mag > uphill + tol) & (mag >= downhill - tol)
    thin = mag * keep
    # (3) double threshold, then (4) hysteresis: grow the strong set into weak neighbours
    strong, weak = thin >= high, thin >= low
    while True:
        grown = weak & (F.max_pool2d(strong.float(), 3, stride=1, padding=1) > 0)
        if torch.equal(grown, strong):
            return strong.float()
        strong = grown


def edge_maps(
    images: Tensor,
    kind: str = "canny",
    low: float = 0.1,
    high: float = 0.2,
    sigma: float = 1.0,
    batch_size: int = 4096,
) -> Tensor:
    """Edge maps (N, 1, H, W) float32 in [0, 1] of ``images`` (N, C, H, W): uint8 pixels or
    floats in [-1, 1]; ``kind`` canny (with its thresholds and smoothing) or sobel. Done in
    batches, so a whole training set needs only its own size in memory."""
    if kind not in ("canny", "sobel"):
        raise ValueError(f"unknown edge map {kind!r}; use canny or sobel")
    out = []
    for chunk in images.split(batch_size):
        x = chunk.float().div(127.5).sub(1) if chunk.dtype == torch.uint8 else chunk
        out.append(canny(x, low, high, sigma) if kind == "canny" else sobel(x))
    return torch.cat(out) if out else images.new_zeros((0, 1, *images.shape[-2:])).float()


def edge_f1(pred: Tensor, target: Tensor, tolerance: int = 1) -> tuple[float, float, float]:
    """(precision, recall, F1) of binary edge maps ``pred`` against ``target`` (N, 1, H, W),
    pooled over all pixels: a predicted edge pixel counts as correct when a target edge
    lies within ``tolerance`` pixels (a (2 tol + 1)^2 window), and a target pixel as found
    when a predicted one does. No edges on either side gives 1 (nothing to miss)."""
    k = 2 * tolerance + 1
    p, t = pred > 0.5, target > 0.5
    near_t = F.max_pool2d(t.float(), k, stride=1, padding=tolerance) > 0
    near_p = F.max_pool2d(p.float(), k, stride=1, padding=tolerance) > 0
    n_p, n_t = int(p.sum()), int(t.sum())
    precision = int((p & near_t).sum()) / n_p if n_p else 1.0
    recall = int((t & near_p).sum()) / n_t if n_t else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1
