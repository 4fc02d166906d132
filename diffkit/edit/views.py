"""Views of an image with exact inverses, for visual anagrams (Geng et al. 2024).

A view must be an orthogonal linear map of the pixels, a permutation or a negation: only
then is the viewed noise again unit Gaussian noise, so a noise estimate of the viewed
image means the same as one of the image itself (Geng et al., Sec. 3.2). Each view here is
built from pixel permutations and sign flips, so it is orthogonal by construction;
:func:`check_orthogonal` verifies any view numerically.

Besides flips and rotations: ``skew`` rolls column i by ``int(1.5 (i - H/2))`` pixels, and
``jigsaw`` cuts a square image into 4 x 4 interlocking pieces and moves them around (both
after the visual-anagrams repository's views of those names; the piece shapes here are
computed, not drawn).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

Map = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class View:
    """``apply`` and its exact ``inverse`` on (B, C, H, W). ``negates``: the view flips
    signs, which a learned variance (a per-pixel log-variance weight, not an image) must
    not follow: :meth:`inverse_variance` only un-permutes it (as the visual-anagrams
    repository does)."""

    name: str
    apply: Map
    inverse: Map
    negates: bool = False

    def inverse_variance(self, v: Tensor) -> Tensor:
        return -self.inverse(v) if self.negates else self.inverse(v)


def _rot(k: int) -> View:
    return View(f"rot{90 * k}", lambda x: x.rot90(k, (-2, -1)), lambda x: x.rot90(-k, (-2, -1)))


def _permutation(name: str, source_of: Callable[[int, int], Tensor]) -> View:
    """A view that moves pixels: ``source_of(H, W)`` (H*W,) long gives, for every pixel
    of the viewed image, the flat index of the pixel it comes from."""

    @lru_cache(maxsize=8)
    def tables(h: int, w: int) -> tuple[Tensor, Tensor]:
        src = source_of(h, w)
        if not torch.equal(src.sort().values, torch.arange(h * w)):
            raise ValueError(f"view {name} is not a pixel permutation on {h} x {w} images")
        return src, src.argsort()

    def move(x: Tensor, inverse: bool) -> Tensor:
        src = tables(x.shape[-2], x.shape[-1])[inverse].to(x.device)
        return x.flatten(-2)[..., src].view(x.shape)  # (..., H*W) gathered, then (..., H, W)

    return View(name, lambda x: move(x, False), lambda x: move(x, True))


SKEW = 1.5  # the visual-anagrams repository's default skew factor


def _skew_source(h: int, w: int) -> Tensor:
    """Column i rolled down by ``int(SKEW (i - H // 2))`` rows (a cyclic shift)."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")  # (H, W) each
    shift = (SKEW * (torch.arange(w) - h // 2)).long()  # (W,), truncated towards zero
    return (((y - shift) % h) * w + x).flatten()


JIGSAW_PIECES = 4  # pieces per side


def jigsaw_labels(size: int, n: int = JIGSAW_PIECES) -> Tensor:
    """(size, size) long: the piece (cell r * n + c) each pixel belongs to. Each piece is
    its cell plus round tabs taken from neighbours; the tab owners follow a rule that only
    uses rotation-invariant quantities, so a quarter turn of the image maps pieces onto
    pieces (what makes :func:`_jigsaw_source` a permutation)."""
    if size % n:
        raise ValueError(f"view jigsaw needs square images whose side is a multiple of {n}")
    s = size // n
    # Doubled coordinates about the image centre: pixel centres and cell centres are integers.
    coord = 2 * torch.arange(size) + 1 - size  # (size,)
    yy, xx = torch.meshgrid(coord, coord, indexing="ij")
    labels = (torch.arange(size) // s)[:, None] * n + (torch.arange(size) // s)[None, :]
    centre = 2 * (torch.arange(n) * s) + s - size  # (n,) doubled cell centres
    radius2 = (0.6 * s) ** 2  # (2 * 0.3 s)^2: a tab of radius 0.3 cell widths
    for r in range(n):
        for c in range(n):
            for dr, dc in ((0, 1), (1, 0)):  # the edges to the right and below
                if r + dr >= n or c + dc >= n:
                    continue
                a = (int(centre[r]), int(centre[c]))
                b = (int(centre[r + dr]), int(centre[c + dc]))
                m = ((a[0] + b[0]) // 2, (a[1] + b[1]) // 2)  # the edge's midpoint
                # Owner: by the sign of the cross product of the midpoint with a -> b (a
                # pinwheel), or the outer cell where they are aligned; both are invariant
                # under rotation about the centre.
                cross = m[0] * (b[1] - a[1]) - m[1] * (b[0] - a[0])
                outer_b = b[0] ** 2 + b[1] ** 2 > a[0] ** 2 + a[1] ** 2
                owner = (
                    (r + dr) * n + c + dc if (cross > 0 or (cross == 0 and outer_b)) else r * n + c
                )
                disk = (yy - m[0]) ** 2 + (xx - m[1]) ** 2 <= radius2
                labels[disk] = owner
    return labels


def _jigsaw_source(h: int, w: int, n: int = JIGSAW_PIECES) -> Tensor:
    """Pieces of each rotation orbit (4 pieces a quarter turn apart) turned together about
    the centre by 1, 2 or 3 quarter turns, so every piece lands, rotated, in the place of
    another of the same shape."""
    if h != w:
        raise ValueError("view jigsaw needs square images")
    labels = jigsaw_labels(h, n)
    cells = torch.arange(n * n).view(n, n)
    orbit_of = torch.stack([cells.rot90(k).flatten() for k in range(4)]).min(0).values
    turns_by_orbit = {int(o): j % 3 + 1 for j, o in enumerate(orbit_of.unique())}
    turns = torch.tensor([turns_by_orbit[int(o)] for o in orbit_of])[labels]  # (H, W)
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dest_y, dest_x = y.clone(), x.clone()
    for _ in range(3):  # a quarter turn, counter-clockwise as rot90: (y, x) -> (H-1-x, y)
        move = turns > 0
        dest_y[move], dest_x[move] = h - 1 - dest_x[move], dest_y[move]
        turns = turns - 1
    dest = (dest_y * w + dest_x).flatten()  # where each source pixel goes
    return dest.argsort()  # for each destination, its source


VIEWS: dict[str, View] = {
    v.name: v
    for v in (
        View("identity", lambda x: x, lambda x: x),
        View("flip", lambda x: x.flip(-2), lambda x: x.flip(-2)),  # upside down
        View("mirror", lambda x: x.flip(-1), lambda x: x.flip(-1)),  # left-right
        _rot(1), _rot(2), _rot(3),
        View("transpose", lambda x: x.transpose(-2, -1), lambda x: x.transpose(-2, -1)),
        View("negate", lambda x: -x, lambda x: -x, negates=True),
        _permutation("skew", _skew_source),
        _permutation("jigsaw", _jigsaw_source),
    )
}  # fmt: skip
"""Views by name; rot90, rot270, transpose and jigsaw need square images (jigsaw: a side
divisible by 4)."""


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
