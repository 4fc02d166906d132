"""What a network is conditioned on, as one small type.

A :class:`Cond` holds any of: class labels (B,), token embeddings (B, L, D) with their
mask (B, L), and hint images (B, C, H, W) with a per-row hint scale (ControlNet).
Classifier-free guidance needs only two of them, the condition and its "unconditional"
partner (the null class, the empty prompt's embeddings), and :meth:`Cond.cat` to run both
halves in one batched call; it never looks inside.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

import torch
from torch import Tensor

ConditionKind = Literal["none", "class", "text"]


@dataclass(frozen=True)
class Cond:
    """A batch of conditions; every field present has the same batch size B."""

    labels: Tensor | None = None  # (B,) long, class indices (the null class included)
    tokens: Tensor | None = None  # (B, L, D) text-encoder hidden states
    mask: Tensor | None = None  # (B, L) bool, True for real tokens
    hint: Tensor | None = None  # (B, C, H, W) in [0, 1], e.g. an edge map
    hint_scale: Tensor | None = None  # (B,) how strongly each row's hint steers; None: 1

    def __post_init__(self) -> None:
        sizes = {t.shape[0] for t in self._tensors().values()}
        if len(sizes) > 1:
            raise ValueError(f"condition fields disagree on the batch size: {sorted(sizes)}")
        if self.mask is not None and self.tokens is None:
            raise ValueError("a token mask needs token embeddings")

    def _tensors(self) -> dict[str, Tensor]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}

    @property
    def batch_size(self) -> int | None:
        """B, or None for an empty condition."""
        tensors = list(self._tensors().values())
        return tensors[0].shape[0] if tensors else None

    def cat(self, other: Cond) -> Cond:
        """``self`` then ``other`` along the batch (both must carry the same fields)."""
        mine, theirs = self._filled(other), other._filled(self)
        if mine.keys() != theirs.keys():
            raise ValueError(f"cannot batch a condition of {sorted(mine)} with one of "
                             f"{sorted(theirs)}")  # fmt: skip
        return replace(self, **{k: torch.cat([v, theirs[k]]) for k, v in mine.items()})

    def _filled(self, other: Cond) -> dict[str, Tensor]:
        """My fields, plus a hint scale of ones where only ``other`` has one (None means 1)."""
        out = self._tensors()
        if "hint_scale" not in out and other.hint_scale is not None and self.hint is not None:
            out["hint_scale"] = torch.ones(self.hint.shape[0], device=self.hint.device)
        return out

    def select(self, index: slice) -> Cond:
        """Rows ``index`` of every field (a batch of a longer request)."""
        return replace(self, **{k: v[index] for k, v in self._tensors().items()})

    def to(self, device: torch.device | str) -> Cond:
        return replace(self, **{k: v.to(device) for k, v in self._tensors().items()})


def class_cond(labels: Tensor) -> Cond:
    """Class labels (B,) as a condition."""
    return Cond(labels=labels)


def null_class(cond: Cond, null_label: int) -> Cond:
    """The unconditional partner of a class condition: every label the null class."""
    if cond.labels is None:
        raise ValueError("a null-class partner needs class labels")
    return replace(cond, labels=torch.full_like(cond.labels, null_label))
