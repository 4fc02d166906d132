"""Hints for a ControlNet from the command line: ``--hint SPEC``.

SPEC is an image file, a folder of them (sorted by name), or dataset items
``DATASET:SPLIT[:RANGE]`` (``mnist:test``, ``mnist:test:0..63``, ``mnist:test:7``; a
range is inclusive). Edge maps are extracted from the images as the ControlNet was trained
(its :class:`~diffkit.config.run.HintConfig`); with ``is_edges`` an image file already is
the edge map (one channel, values / 255). Hints must have the model's size exactly: an
edge map resized is no longer one pixel wide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from diffkit.data.edges import edge_maps
from diffkit.data.images import open_sized
from diffkit.data.registry import DataError

if TYPE_CHECKING:
    from diffkit.config.run import HintConfig

ITEMS = re.compile(
    r"^(?P<dataset>[\w-]+):(?P<split>train|test)(?::(?P<lo>\d+)(?:\.\.(?P<hi>\d+))?)?$"
)
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class HintError(DataError):
    """A hint that cannot be read or does not fit the model (one line, exit 2)."""


@dataclass(frozen=True)
class Hints:
    maps: Tensor  # (N, 1, H, W) float32 in [0, 1]
    labels: Tensor | None  # (N,) the source images' classes (dataset items), else None
    images: Tensor | None  # (N, C, H, W) uint8 source images; None for given edge maps

    def __len__(self) -> int:
        return self.maps.shape[0]

    def select(self, n: int) -> Hints:
        """The first ``n`` hints."""
        part = slice(0, n)
        return Hints(self.maps[part], None if self.labels is None else self.labels[part],
                     None if self.images is None else self.images[part])  # fmt: skip


def load_hints(
    spec: str,
    shape: tuple[int, int, int],
    hint: HintConfig,
    data_dir: Path,
    *,
    is_edges: bool = False,
) -> Hints:
    """``spec`` as hints for a model drawing ``shape`` (C, H, W) images."""
    item = ITEMS.match(spec)
    if item is not None and not Path(spec).exists():
        if is_edges:
            raise HintError(f"--hint {spec}: --hint-is-edges takes image files, not dataset items")
        images, labels = _dataset_items(item, shape, data_dir)
    else:
        images, labels = _files(spec, shape, is_edges), None
    if is_edges:
        return Hints(images.float() / 255, None, None)
    return Hints(edge_maps(images, hint.kind, hint.low, hint.high, hint.sigma), labels, images)


def _dataset_items(item: re.Match, shape, data_dir: Path) -> tuple[Tensor, Tensor | None]:
    from diffkit.config.run import DataConfig
    from diffkit.data.registry import load_dataset

    spec = item.string
    try:
        cfg = DataConfig(dataset=item["dataset"])
    except ValueError:
        raise HintError(f"--hint {spec}: unknown dataset {item['dataset']!r}") from None
    data = load_dataset(cfg, data_dir, item["split"], download=False)  # type: ignore[arg-type]
    lo = int(item["lo"]) if item["lo"] is not None else 0
    hi = int(item["hi"]) if item["hi"] is not None else (lo if item["lo"] else len(data) - 1)
    if not lo <= hi < len(data):
        raise HintError(f"--hint {spec}: {item['dataset']} {item['split']} has {len(data)} "
                        f"images (0..{len(data) - 1})")  # fmt: skip
    images = data.images[lo : hi + 1]
    if tuple(images.shape[1:]) != tuple(shape):
        raise HintError(f"--hint {spec}: its images are {tuple(images.shape[1:])}; the model "
                        f"draws {tuple(shape)}")  # fmt: skip
    labels = data.labels[lo : hi + 1] if data.labels is not None else None
    return images, labels


def _files(spec: str, shape, is_edges: bool) -> Tensor:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
        if not files:
            raise HintError(f"--hint {spec}: the folder holds no images ({', '.join(SUFFIXES)})")
    elif path.is_file():
        files = [path]
    else:
        raise HintError(f"--hint {spec}: no such file or folder (or DATASET:SPLIT[:A..B])")
    return torch.stack([_read(f, shape, is_edges) for f in files])


def _read(path: Path, shape, is_edges: bool) -> Tensor:
    """One file as uint8 (C, H, W): C = 1 for an edge map, else the model's channels."""
    channels, h, w = shape
    with open_sized(path, (w, h), "--hint", HintError) as img:
        bands = len(img.getbands())
        if is_edges:
            array = np.asarray(img.convert("RGB" if bands >= 3 else "L"))
            if array.ndim == 3 and not (array == array[..., :1]).all():
                raise HintError(f"--hint {path} has {bands} different channels; an edge "
                                "map has one (save it as grayscale)")  # fmt: skip
            array = array[..., 0] if array.ndim == 3 else array
        else:
            array = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    x = torch.from_numpy(array.copy()).to(torch.uint8)
    return x.reshape(h, w, -1).permute(2, 0, 1)  # (C, H, W)
