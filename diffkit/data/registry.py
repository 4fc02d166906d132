"""Dataset registry: ``mnist``, ``fashion-mnist``, ``cifar10`` and ``folder:PATH``.

Every dataset loads once into memory as ``uint8 (N, C, H, W)`` plus ``int64 (N,)`` labels.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from diffkit.data.idx import read_idx
from diffkit.errors import DataError
from diffkit.resources import check_memory

if TYPE_CHECKING:
    import numpy as np

    from diffkit.config.run import DataConfig

Split = Literal["train", "test"]


@dataclass(frozen=True)
class ImageData:
    images: Tensor  # (N, C, H, W) uint8
    labels: Tensor | None  # (N,) int64
    class_names: tuple[str, ...] = ()
    skipped: int = 0  # unreadable files left out of a folder: dataset (the caller reports it)

    def __len__(self) -> int:
        return self.images.shape[0]


_DIGITS = tuple(str(i) for i in range(10))
_FASHION = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# name -> (file stem per split, md5 of the images and labels files, class names)
_IDX_SETS: dict[str, tuple[dict[str, str], dict[str, str], tuple[str, ...]]] = {
    "mnist": (
        {"train": "train", "test": "t10k"},
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        _DIGITS,
    ),
    "fashion-mnist": (
        {"train": "train", "test": "t10k"},
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        _FASHION,
    ),
}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
MAX_IMAGE_PIXELS = 8192 * 8192  # larger headers in a folder: dataset are skipped unread
NAMES = ("mnist", "fashion-mnist", "cifar10", "folder:PATH")


def check_name(name: str) -> str:
    """Validate a dataset name (used by the config); returns it unchanged."""
    if name in _IDX_SETS or name == "cifar10" or (name.startswith("folder:") and len(name) > 7):
        return name
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of a labelled dataset, index order; () for unlabelled folders."""
    if dataset in _IDX_SETS:
        return _IDX_SETS[dataset][2]
    return _CIFAR if dataset == "cifar10" else ()


def image_shape(cfg: DataConfig) -> tuple[int, int]:
    """(channels, size) of a dataset's images, known without loading it."""
    if cfg.dataset in _IDX_SETS:
        return 1, 28
    if cfg.dataset == "cifar10":
        return 3, 32
    return cfg.channels, cfg.image_size


def load_dataset(
    cfg: DataConfig, data_dir: Path, split: Split = "train", download: bool = True
) -> ImageData:
    """Load a split into memory; ``cfg.limit`` keeps the first N images."""
    if cfg.dataset in _IDX_SETS:
        data = _load_idx(cfg.dataset, Path(data_dir), split, download)
    elif cfg.dataset == "cifar10":
        data = _load_cifar10(Path(data_dir), split, download)
    else:
        data = _load_folder(Path(cfg.dataset.removeprefix("folder:")), cfg.image_size, cfg.channels)
    if cfg.limit is not None:
        labels = data.labels[: cfg.limit] if data.labels is not None else None
        data = ImageData(data.images[: cfg.limit], labels, data.class_names, data.skipped)
    return data


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_idx(name: str, data_dir: Path, split: Split, download: bool) -> ImageData:
    stems, md5s, classes = _IDX_SETS[name]
    folder = data_dir / name
    files = [f"{stems[split]}-images-idx3-ubyte.gz", f"{stems[split]}-labels-idx1-ubyte.gz"]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing and download:
        _download_idx(name, folder)
        missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"{name} {split} split not found: put {' and '.join(missing)} in {folder} "
            f"(or set --data-dir / DIFFKIT_DATA_DIR to a folder holding {name}/)"
        )
    for f in files:
        if _md5(folder / f) != md5s[f]:
            raise DataError(
                f"{folder / f} is corrupt (MD5 differs from the published one); delete it and "
                "run again to re-download, or replace it with the original file"
            )
    images = read_idx(folder / files[0]).unsqueeze(1)  # (N, 1, 28, 28)
    labels = read_idx(folder / files[1]).long()
    return ImageData(images, labels, classes)


def _download_idx(name: str, folder: Path) -> None:
    """Fetch the IDX files with torchvision into ``folder``; offline this does nothing."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cls(tmp, train=True, download=True)
            cls(tmp, train=False, download=True)
        except Exception:
            return
        folder.mkdir(parents=True, exist_ok=True)
        for gz in Path(tmp).rglob("*.gz"):
            partial = folder / f".{gz.name}.partial"
            shutil.copyfile(gz, partial)
            partial.replace(folder / gz.name)  # never a half-copied file under the real name


def _load_cifar10(data_dir: Path, split: Split, download: bool) -> ImageData:
    from torchvision import datasets

    root = data_dir / "cifar10"
    try:
        ds = datasets.CIFAR10(str(root), train=split == "train", download=download)
    except Exception as exc:
        raise DataError(
            f"cifar10 not found in {root}: put the extracted cifar-10-batches-py/ folder there "
            f"({type(exc).__name__})"
        ) from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    return ImageData(images, torch.tensor(ds.targets, dtype=torch.long), _CIFAR)


def _load_folder(folder: Path, size: int, channels: int) -> ImageData:
    """Every readable image below ``folder``, center-cropped to a square and resized to
    ``size``; corrupt or oversized files are skipped and counted in ``skipped``."""
    import numpy as np

    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    paths = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()
    )
    if not paths:
        raise DataError(f"no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in {folder}")
    # the decoded arrays, their stack and its channels-first copy exist together briefly
    check_memory(3 * len(paths) * size * size * channels, f"loading {len(paths)} images")
    arrays = [a for a in (_read_image(p, size, channels) for p in paths) if a is not None]
    if not arrays:
        raise DataError(
            f"all {len(paths)} images in {folder} are unreadable (corrupt, or over "
            f"{MAX_IMAGE_PIXELS} pixels)"
        )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageData(images, None, (), skipped=len(paths) - len(arrays))


def _read_image(path: Path, size: int, channels: int) -> np.ndarray | None:
    """One image as uint8 (size, size, channels), or None if it cannot be decoded safely."""
    import numpy as np
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        # PIL only warns below twice its own limit; a bomb is a skipped file, never a hang
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                width, height = im.size  # from the header: nothing decoded yet
                if width * height > MAX_IMAGE_PIXELS:
                    return None
                im = ImageOps.fit(
                    im.convert("L" if channels == 1 else "RGB"), (size, size),
                    Image.Resampling.BICUBIC,
                )  # fmt: skip
                return np.asarray(im, dtype=np.uint8).reshape(size, size, channels)
        except Exception:  # PIL's decoders raise many types (OSError, SyntaxError, ...)
            return None
