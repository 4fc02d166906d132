"""Views of an image with exact inverses, for visual anagrams (Geng et al. 2024).

A view must be an orthogonal linear map of the pixels, a permutation or a negation: only
then is the viewed noise again unit Gaussian noise, so a noise estimate of the viewed
image means the same as one of the image itself (Geng et al., Sec. 3.2). Each view here is
built from pixel permutations and sign flips, so it is orthogonal by construction;
:func:`check_orthogonal` verifies any view numerically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

Map = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class View:
    """``apply`` and its exact ``inverse`` on (B, C, H, W)."""

    name: str
    apply: Map
    inverse: Map


def _rot(k: int) -> View:
    return View(f"rot{90 * k}", lambda x: x.rot90(k, (-2, -1)), lambda x: x.rot90(-k, (-2, -1)))


VIEWS: dict[str, View] = {
    v.name: v
    for v in (
        View("identity", lambda x: x, lambda x: x),
        View("flip", lambda x: x.flip(-2), lambda x: x.flip(-2)),  # upside down
        View("mirror", lambda x: x.flip(-1), lambda x: x.flip(-1)),  # left-right
        _rot(1), _rot(2), _rot(3),
        View("transpose", lambda x: x.transpose(-2, -1), lambda x: x.transpose(-2, -1)),
        View("negate", lambda x: -x, lambda x: -x),
    )
}  # fmt: skip
"""Views by name; rot90 and rot270 and transpose need square images."""


def view(name: str) -> View:
    try:
        return VIEWS[name]
    except KeyError:
        raise ValueError(f"unknown view {name!r}; choose one of {', '.join(VIEWS)} (a view "
                         "must be a pixel permutation or a negation)") from None  # fmt: skip


def check_orthogonal(v: View, shape: tuple[int, ...], atol: float = 1e-6) -> None:
    """ValueError unless ``v`` preserves inner products on images of ``shape`` (C, H, W)
    and ``inverse`` undoes ``apply``: tested on random pairs."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 1, *shape, generator=g, dtype=torch.float64).unbind(0)
    va, vb = v.apply(a), v.apply(b)
    if va.shape != a.shape or not torch.allclose(v.inverse(va), a, atol=atol):
        raise ValueError(f"view {v.name} has no exact inverse on {tuple(shape)} images")
    if not torch.allclose((va * vb).sum(), (a * b).sum(), atol=atol * a.numel()):
        raise ValueError(f"view {v.name} is not orthogonal: viewed noise would not be "
                         "unit Gaussian")  # fmt: skip
