"""Edge consistency of a ControlNet's samples with their hints.

* F1 at a tolerance of one pixel between the Canny map of each sample and the Canny map
  of the hint's source image (the hint itself, for a Canny ControlNet), pooled over all
  pixels (:func:`~diffkit.data.edges.edge_f1`); with given edge maps, against those.
  On 28 x 28 digits one pixel of slack is generous (two unrelated MNIST digits score
  about 0.69, docs/benchmarks.md), so ``f1_exact``, with no tolerance, is reported too.
* Sobel L1: the mean absolute difference of the Sobel magnitudes of sample and source,
  a threshold-free measure that also sees soft edges.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from diffkit.config.run import HintConfig
from diffkit.data.edges import canny, edge_f1, sobel
from diffkit.data.hints import Hints


def edge_scores(samples: Tensor, hints: Hints, rows: Tensor, hint: HintConfig) -> dict[str, Any]:
    """Scores of ``samples`` (N, C, H, W) in [-1, 1] drawn for hints ``rows`` (N,) of
    ``hints``; Canny at the ControlNet's thresholds (the defaults for a Sobel one)."""
    c = hint if hint.kind == "canny" else HintConfig()
    pred = canny(samples, c.low, c.high, c.sigma)  # (N, 1, H, W) 0/1
    out: dict[str, Any] = {"n": samples.shape[0], "tolerance_px": 1,
                           "canny": {"low": c.low, "high": c.high, "sigma": c.sigma}}  # fmt: skip
    if hints.images is not None:
        source = hints.images[rows].float() / 127.5 - 1  # (N, C, H, W)
        target = canny(source, c.low, c.high, c.sigma)
        out["sobel_l1"] = float((sobel(samples) - sobel(source)).abs().mean())
    else:  # given edge maps
        target = (hints.maps[rows] > 0.5).float()
    out["precision"], out["recall"], out["f1"] = edge_f1(pred, target)
    out["f1_exact"] = edge_f1(pred, target, tolerance=0)[2]  # no tolerance: stricter
    return out
