"""What every dataset loads into: uint8 images (+ labels), and the conversions to and from
the [-1, 1] floats the networks see. Imports nothing else of diffkit.data, so every loader
(registry, prepared, cifar) can use it without import cycles."""

from __future__ import annotations

import functools
import math
import os
import struct
import threading
import warnings
import zlib
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


# What PIL raises for a file it cannot decode (UnidentifiedImageError is an OSError): a
# truncated or corrupt file, a header that lies about its chunks.
READ_ERRORS = (OSError, SyntaxError, EOFError, struct.error, zlib.error)
_PIL_LIMIT = threading.RLock()  # PIL's bomb limit is a module global: one reader sets it


def max_image_pixels() -> int:
    """The setting ``max_image_pixels`` (``DIFFKIT_MAX_IMAGE_PIXELS``), read once per
    value of the variable: a folder's every file asks (building the settings takes ~1 ms)."""
    name = "diffkit_max_image_pixels"  # the settings read env names case-insensitively
    return _max_pixels(tuple(sorted((k, v) for k, v in os.environ.items() if k.lower() == name)))


@functools.lru_cache(maxsize=8)
def _max_pixels(variables: tuple[tuple[str, str], ...]) -> int:
    from diffkit.config.settings import Settings

    return Settings().max_image_pixels


@contextmanager
def _pil_limit(limit: int | None) -> Iterator[None]:
    """PIL's own decompression-bomb limit set to ``limit`` while the block runs."""
    from PIL import Image

    with _PIL_LIMIT:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextmanager
def open_image(
    path: Path | str, flag: str, error: type[Exception], max_pixels: int | None = None
) -> Iterator[Image]:
    """The image file ``path`` (PIL, open while the block runs) once its header's size is
    known to be at most ``max_pixels`` (None: the setting :func:`max_image_pixels`):
    nothing is decoded before that check. A larger image, or a file that cannot be read
    (also while the block decodes it), is a one-line ``error`` naming the option ``flag``.

    This limit is the only one: PIL's own (``Image.MAX_IMAGE_PIXELS``, which would stop a
    bomb with its own exception before the header could be read) is lifted while the
    header is read and equals ``max_pixels`` while the block runs (frames of a GIF or
    TIFF are checked as they are decoded), then restored."""
    from PIL import Image

    limit = max_image_pixels() if max_pixels is None else max_pixels
    with _PIL_LIMIT, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with _pil_limit(None):
                img = Image.open(path)  # lazy: the header only
        except READ_ERRORS as exc:
            raise error(f"{flag} {path}: cannot read it as an image ({exc})") from None
        with img:
            w, h = img.size
            if w * h > limit:
                raise error(f"{flag} {path}: its header declares {w}x{h} pixels, over the "
                            f"limit of {limit} ({_megapixels(limit)}); set "
                            "DIFFKIT_MAX_IMAGE_PIXELS to read larger images")  # fmt: skip
            try:
                with _pil_limit(limit):
                    yield img
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                why = f"a frame in it is over the limit of {limit} pixels"
                raise error(f"{flag} {path}: {why}; set DIFFKIT_MAX_IMAGE_PIXELS") from None
            except READ_ERRORS as exc:
                raise error(f"{flag} {path}: cannot read it as an image ({exc})") from None


def _megapixels(pixels: int) -> str:
    side = math.isqrt(pixels)
    return f"{side}x{side}" if side * side == pixels else f"{pixels / 1e6:.3g} megapixels"


@contextmanager
def open_sized(
    path: Path | str, size: tuple[int, int], flag: str, error: type[Exception]
) -> Iterator[Image]:
    """The image file ``path`` (:func:`open_image`, open while the block runs), which must
    be ``size`` (W, H) exactly: the model's. A file of another size, or one that cannot be
    read, is a one-line ``error`` naming the option ``flag``."""
    w, h = size
    with open_image(path, flag, error) as img:
        if img.size != (w, h):
            raise error(f"{flag} {path} is {img.width}x{img.height}; the model's images "
                        f"are {w}x{h}")  # fmt: skip
        yield img
