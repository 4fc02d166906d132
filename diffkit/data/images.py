"""What every dataset loads into: uint8 images (+ labels), and the conversions to and from
the [-1, 1] floats the networks see. Imports nothing else of diffkit.data, so every loader
(registry, prepared, cifar) can use it without import cycles."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True)
class ImageData:
    images: Tensor  # (N, C, H, W) uint8
    labels: Tensor | None  # (N,) int64
    class_names: tuple[str, ...] = ()
    skipped: int = 0  # unreadable files left out of a folder: dataset (the caller reports it)
    empty_classes: tuple[str, ...] = ()  # a folder's classes whose every file was skipped

    def __len__(self) -> int:
        return self.images.shape[0]


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(x: Tensor) -> Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@contextmanager
def open_sized(
    path: Path | str, size: tuple[int, int], flag: str, error: type[Exception]
) -> Iterator[Image]:
    """The image file ``path`` (PIL, open while the block runs), which must be ``size`` (W,
    H) exactly: the model's. A file of another size, or one that cannot be read (also
    while the block reads it), is a one-line ``error`` naming the option ``flag``."""
    from PIL import Image, UnidentifiedImageError

    w, h = size
    try:
        with Image.open(path) as img:
            if img.size != (w, h):
                raise error(f"{flag} {path} is {img.width}x{img.height}; the model's images "
                            f"are {w}x{h}")  # fmt: skip
            yield img
    except (OSError, UnidentifiedImageError) as exc:
        raise error(f"{flag} {path}: cannot read it as an image ({exc})") from None
