"""Cross-entropy for the feature classifier, with random-translation augmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by its own integer offset in [-max_shift, max_shift]² with
    zero (background, -1) padding. x: (B, C, H, W) in [-1, 1]."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(
        0, 2 * max_shift + 1, (2, b, 1), generator=generator, device=generator.device
    ).to(x.device)
    rows = torch.arange(h, device=x.device)[None] + dy  # (B, H)
    cols = torch.arange(w, device=x.device)[None] + dx  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


class ClassifierObjective:
    """``(net, x, labels, generator) -> loss``, the loop's objective contract."""

    def __init__(self, max_shift: int = 2, label_smoothing: float = 0.0) -> None:
        self.max_shift, self.label_smoothing = max_shift, label_smoothing

    def __call__(
        self, net: nn.Module, x: Tensor, labels: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        if labels is None:
            raise ValueError("the classifier needs a labelled dataset")
        x = random_shift(x, self.max_shift, generator)
        return F.cross_entropy(net(x), labels, label_smoothing=self.label_smoothing)
