"""Class conditioning for denoisers, with a learned null class for classifier-free guidance.

Labels are integers ``0..K-1``; ``K`` is the **null class** that training substitutes for
dropped labels (Ho & Salimans 2022, Algorithm 1) and that guidance uses for the
unconditional prediction. A network called with ``cond=None`` sees the null class.

Three routes carry the label into a UNet, selectable and combinable:

* ``time``: the label's embedding (one-hot -> MLP) is added to the time embedding, so it
  modulates every residual block through their scale-shift;
* ``input``: the embedding is mapped to an H x W map and concatenated to the image as an
  extra input channel (as some MNIST guidance UNets do);
* ``cross``: the embedding becomes ``tokens`` context vectors that cross-attention layers
  attend to (Rombach et al. 2022, Sec. 3.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

Route = str  # "time" | "input" | "cross"


def null_labels(cond: Tensor | None, batch: int, num_classes: int, device) -> Tensor:
    """``cond`` with ``None`` replaced by a batch of null labels: (B,) long."""
    if cond is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    return cond.long()


def drop_labels(labels: Tensor, p: float, num_classes: int, generator: torch.Generator) -> Tensor:
    """Replace each label by the null class with probability ``p`` (labels: (B,) long)."""
    if p <= 0:
        return labels
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < p
    return torch.where(drop, torch.full_like(labels, num_classes), labels)


def training_labels(
    cond: Tensor | None, num_classes: int | None, p: float, generator: torch.Generator
) -> Tensor | None:
    """The labels a network sees in training: None if it is unconditional (``num_classes``
    None), else ``cond`` with each label dropped to the null class with probability ``p``
    (Ho & Salimans 2022, Algorithm 1)."""
    if num_classes is None:
        return None
    if cond is None:
        raise ValueError("a class-conditional model needs labelled data")
    return drop_labels(cond, p, num_classes, generator)


@dataclass
class Conditioning:
    """What the routes hand the network; a field is None when its route is off."""

    time: Tensor | None = None  # (B, E), added to the time embedding
    image: Tensor | None = None  # (B, 1, H, W), concatenated to the input
    context: Tensor | None = None  # (B, T, D), attended to by cross-attention


class ClassConditioner(nn.Module):
    """Maps labels (B,) (``num_classes`` = null) to a :class:`Conditioning`."""

    def __init__(
        self,
        num_classes: int,
        routes: tuple[Route, ...],
        *,
        emb_dim: int,
        image_size: int,
        context_dim: int,
        tokens: int,
        embed_dim: int = 32,
    ) -> None:
        super().__init__()
        self.num_classes, self.routes = num_classes, routes
        self.image_size, self.tokens, self.context_dim = image_size, tokens, context_dim
        # nn.Embedding of K + 1 rows is a linear layer on the one-hot vector.
        self.embed = nn.Embedding(num_classes + 1, embed_dim)
        self.to_time = (
            nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, emb_dim), nn.SiLU(),
                          nn.Linear(emb_dim, emb_dim))
            if "time" in routes else None
        )  # fmt: skip
        self.to_image = nn.Linear(embed_dim, image_size**2) if "input" in routes else None
        self.to_context = (
            nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, tokens * context_dim))
            if "cross" in routes else None
        )  # fmt: skip

    def forward(self, labels: Tensor) -> Conditioning:
        e = self.embed(labels)  # (B, embed_dim)
        b, s = labels.shape[0], self.image_size
        return Conditioning(
            time=self.to_time(e) if self.to_time is not None else None,
            image=self.to_image(e).view(b, 1, s, s) if self.to_image is not None else None,
            context=(
                self.to_context(e).view(b, self.tokens, self.context_dim)
                if self.to_context is not None
                else None
            ),
        )
