"""Images and masks for editing: files (PNG, JPG, ...) or dataset items, in a model's
shape and value range."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffkit.data.images import open_image, open_sized
from diffkit.errors import ImageError

ITEM = re.compile(r"^(?P<dataset>[\w-]+):(?P<split>train|test):(?P<index>\d+)$")


def load_image(spec: str, shape: tuple[int, ...], data_dir: Path) -> Tensor:
    """``spec`` (a file, or ``DATASET:SPLIT:INDEX`` such as ``mnist:test:0``) as (1, C, H,
    W) float32 in [-1, 1]: converted to gray or RGB as ``shape`` (C, H, W) needs, resized
    so the shorter side fits and center-cropped."""
    channels, h, w = shape
    item = ITEM.match(spec)
    if item is not None:
        return _dataset_item(item, shape, data_dir)
    from PIL import Image

    with open_image(spec, "--image", ImageError) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        scale = max(h / img.height, w / img.width)
        size = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BICUBIC)
        left, top = (img.width - w) // 2, (img.height - h) // 2
        array = np.asarray(img.crop((left, top, left + w, top + h)), dtype=np.float32)
    x = torch.from_numpy(array.copy()).reshape(h, w, -1).permute(2, 0, 1)  # (C, H, W)
    return (x / 127.5 - 1).unsqueeze(0)


GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def image_shape(spec: str, data_dir: Path, size: int | None = None) -> tuple[int, int, int]:
    """The (C, H, W) ``spec`` has of itself, for an edit without a model: a dataset item's
    shape; a file's size (or ``size`` x ``size``: :func:`load_image` resizes and crops it)
    and 1 channel for a gray image, else 3."""
    item = ITEM.match(spec)
    if item is not None:
        if size is not None:
            raise ImageError(f"--size resizes image files; {spec} keeps its dataset's size")
        from diffkit.config.run import DataConfig
        from diffkit.data.registry import image_shape as dataset_shape

        c, side = dataset_shape(DataConfig(dataset=item["dataset"]))  # known without loading
        return c, side, side
    with open_image(spec, "--image", ImageError) as img:
        channels = 1 if img.mode in GRAY_MODES else 3
        h, w = (size, size) if size is not None else (img.height, img.width)
    return channels, h, w


def _dataset_item(item: re.Match, shape: tuple[int, ...], data_dir: Path) -> Tensor:
    from diffkit.config.run import DataConfig
    from diffkit.data.registry import load_dataset

    data = load_dataset(DataConfig(dataset=item["dataset"]), data_dir, item["split"],
                        download=False)  # type: ignore[arg-type]  # fmt: skip
    index = int(item["index"])
    if index >= len(data):
        raise ImageError(f"--image {item.string}: {item['dataset']} {item['split']} has "
                         f"{len(data)} images")  # fmt: skip
    x = data.images[index : index + 1].float() / 127.5 - 1  # (1, C, H, W)
    if tuple(x.shape[1:]) != tuple(shape):
        raise ImageError(f"--image {item.string} is {tuple(x.shape[1:])}; the model draws "
                         f"{tuple(shape)}")  # fmt: skip
    return x


def box_mask(box: str, shape: tuple[int, ...]) -> Tensor:
    """``x0,y0,x1,y1`` (pixels, end exclusive) -> (1, 1, H, W) with 1 inside the box."""
    _, h, w = shape
    try:
        x0, y0, x1, y1 = (int(v) for v in box.split(","))
    except ValueError:
        raise ImageError(f"--box {box}: expected x0,y0,x1,y1 in pixels") from None
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ImageError(f"--box {box}: need 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}")
    mask = torch.zeros(1, 1, h, w)
    mask[..., y0:y1, x0:x1] = 1
    return mask


def file_mask(path: str, shape: tuple[int, ...]) -> Tensor:
    """A mask image (white: regenerate) of the model's size exactly, as (1, 1, H, W) 0/1."""
    _, h, w = shape
    with open_sized(path, (w, h), "--mask", ImageError) as img:
        array = np.asarray(img.convert("L"), dtype=np.float32)
    return torch.from_numpy((array > 127).astype(np.float32)).reshape(1, 1, h, w)
