"""Dataset registry: ``mnist``, ``fashion-mnist``, ``cifar10`` and ``folder:PATH``.

Every dataset loads once into memory as ``uint8 (N, C, H, W)`` plus ``int64 (N,)`` labels.
A ``folder:`` dataset is labelled when it holds one subfolder per class
(:mod:`diffkit.data.folders`); CIFAR-10 is read from its binary version when it is there
(:mod:`diffkit.data.cifar`).

The class names of a dataset whose names come from its files (a folder's) are recorded in
the run's config at training start (``DataConfig.class_names``): :func:`class_names_of`
reads them from there, so a run keeps its names when the folder moves or changes, and
:func:`load_dataset` refuses a folder whose classes no longer match them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from diffkit.data.cifar import CLASSES as _CIFAR
from diffkit.data.cifar import load_cifar10
from diffkit.data.folders import folder_class_names, folder_items
from diffkit.data.idx import read_idx
from diffkit.data.images import ImageData, max_image_pixels, open_image
from diffkit.data.prepared import PREFIX, load_prepared, read_manifest
from diffkit.errors import DataError
from diffkit.resources import check_memory

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from diffkit.config.run import DataConfig

Split = Literal["train", "test"]


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
NAMES = ("mnist", "fashion-mnist", "cifar10", "folder:PATH", "prepared:PATH")
PREPARED = PREFIX  # a folder written by `diffkit data prepare` (diffkit.data.prepared)


def check_name(name: str) -> str:
    """Validate a dataset name (used by the config); returns it unchanged."""
    if name in _IDX_SETS or name == "cifar10" or (name.startswith("folder:") and len(name) > 7):
        return name
    if name.startswith(PREPARED) and len(name) > len(PREPARED):
        return name
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")


def _builtin_names(dataset: str) -> tuple[str, ...] | None:
    """The class names diffkit knows for a dataset, or None when its files hold them."""
    if dataset in _IDX_SETS:
        return _IDX_SETS[dataset][2]
    return _CIFAR if dataset == "cifar10" else None


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of a dataset as it is now, index order; () for a flat folder. A
    folder is scanned (no image decoded); a missing or empty one is a DataError."""
    names = _builtin_names(dataset)
    if names is not None:
        return names
    if dataset.startswith("folder:"):
        return folder_class_names(Path(dataset.removeprefix("folder:")))
    if dataset.startswith(PREPARED):
        return tuple(_prepared_manifest(dataset).get("class_names") or ())
    return ()


def _prepared_manifest(dataset: str) -> dict:
    return read_manifest(Path(dataset.removeprefix(PREPARED)))


def class_names_of(cfg: DataConfig) -> tuple[str, ...]:
    """The class names a run was trained with: those recorded in its config, else the
    built-in ones. A folder with none recorded was unlabelled (or trained before names
    were recorded, when folders had no labels): () and no scan, since the folder as it is
    now may not be what the run saw, or may be gone."""
    if cfg.class_names is not None:
        return cfg.class_names
    return _builtin_names(cfg.dataset) or ()


def with_class_names(cfg: DataConfig, data: ImageData) -> DataConfig:
    """``cfg`` recording the class names of the loaded ``data`` (a labelled folder's),
    for the run's config and checkpoints; unchanged when they are built in or recorded."""
    if cfg.class_names is not None or not data.class_names:
        return cfg
    if _builtin_names(cfg.dataset) is not None:
        return cfg
    return cfg.model_copy(update={"class_names": tuple(data.class_names)})


def _check_recorded(cfg: DataConfig, data: ImageData) -> None:
    """The dataset's classes must be the ones the config recorded (index for index)."""
    if cfg.class_names is None or tuple(cfg.class_names) == tuple(data.class_names):
        return
    now = ", ".join(data.class_names) or "none (unlabelled)"
    raise DataError(
        f"{cfg.dataset} now has classes {now}; the run was trained with "
        f"{', '.join(cfg.class_names)} (data.class_names in its config): restore the "
        "folder or train a new run"
    )


def image_shape(cfg: DataConfig) -> tuple[int, int]:
    """(channels, size) of a dataset's images, known without loading it."""
    if cfg.dataset in _IDX_SETS:
        return 1, 28
    if cfg.dataset == "cifar10":
        return 3, 32
    # a prepared dataset's config holds its manifest's shape (DataConfig records it)
    return cfg.channels, cfg.image_size


def load_dataset(
    cfg: DataConfig, data_dir: Path, split: Split = "train", download: bool = True
) -> ImageData:
    """Load a split into memory (a prepared one that does not fit: memory-mapped);
    ``cfg.limit`` keeps the first N images."""
    if cfg.dataset.startswith(PREPARED):
        data = _load_prepared(Path(cfg.dataset.removeprefix(PREPARED)), split)
    elif cfg.dataset in _IDX_SETS:
        data = _load_idx(cfg.dataset, Path(data_dir), split, download)
    elif cfg.dataset == "cifar10":
        data = ImageData(*load_cifar10(Path(data_dir), split, download), _CIFAR)
    else:
        data = _load_folder(Path(cfg.dataset.removeprefix("folder:")), cfg.image_size, cfg.channels)
    _check_recorded(cfg, data)
    if cfg.limit is not None:
        labels = data.labels[: cfg.limit] if data.labels is not None else None
        data = dataclasses.replace(data, images=data.images[: cfg.limit], labels=labels)
    return data


def _load_prepared(folder: Path, split: Split) -> ImageData:
    """A prepared split; one prepared from a folder has only ``train``, which also serves
    as its test split, as the folder's own images do."""
    if split == "test" and "test" not in read_manifest(folder)["splits"]:
        split = "train"
    return load_prepared(folder, split)


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


def _load_folder(folder: Path, size: int, channels: int) -> ImageData:
    """Every readable image of ``folder`` (:func:`~diffkit.data.folders.folder_items`),
    center-cropped to a square and resized to ``size``; corrupt or oversized files are
    skipped and counted in ``skipped``. A class whose files all fail keeps its index (the
    names stay those of the folders) and is named in ``empty_classes``: one broken class
    should not stop training on the others, and the caller says which classes are empty."""
    import numpy as np

    paths, labels, classes = folder_items(folder)
    # the decoded arrays, their stack and its channels-first copy exist together briefly
    check_memory(3 * len(paths) * size * size * channels, f"loading {len(paths)} images")
    arrays: list[np.ndarray] = []
    kept: list[int] = []  # indices into paths of the decoded images
    max_pixels = max_image_pixels()
    for i, path in enumerate(paths):
        array = _read_image(path, size, channels, max_pixels)
        if array is not None:
            arrays.append(array)
            kept.append(i)
    if not arrays:
        raise DataError(
            f"all {len(paths)} images in {folder} are unreadable (corrupt, or over "
            f"{max_pixels} pixels: DIFFKIT_MAX_IMAGE_PIXELS)"
        )
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    if labels is None:
        return ImageData(images, None, (), skipped=len(paths) - len(arrays))
    y = torch.tensor([labels[i] for i in kept], dtype=torch.long)  # (N,)
    counts = torch.bincount(y, minlength=len(classes))  # (K,) images kept per class
    empty = tuple(c for c, count in zip(classes, counts.tolist(), strict=True) if not count)
    return ImageData(images, y, classes, skipped=len(paths) - len(arrays), empty_classes=empty)


def _read_image(
    path: Path, size: int, channels: int, max_pixels: int | None = None
) -> np.ndarray | None:
    """One image as uint8 (size, size, channels), or None if it cannot be decoded safely:
    corrupt, or its header declares over ``max_pixels`` (None: the setting; checked by
    :func:`open_image` before decoding: a bomb is a skipped file, never a hang)."""
    import numpy as np
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a palette's transparency: the image is usable
        try:
            with open_image(path, "", DataError, max_pixels) as im:
                im = ImageOps.fit(
                    _eight_bit(im).convert("L" if channels == 1 else "RGB"), (size, size),
                    Image.Resampling.BICUBIC,
                )  # fmt: skip
                return np.asarray(im, dtype=np.uint8).reshape(size, size, channels)
        except Exception:  # PIL's decoders raise many types (OSError, SyntaxError, ...)
            return None


_WIDE_GRAY = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _eight_bit(im: Image.Image) -> Image.Image:
    """A 16-bit gray image (modes I;16* and I, as 16-bit PNGs and TIFFs open) scaled to 8
    bits (L): PIL's own convert clips every value over 255 to white instead of scaling."""
    if im.mode not in _WIDE_GRAY:
        return im
    import numpy as np
    from PIL import Image

    wide = np.clip(np.asarray(im).astype(np.int32), 0, 65535)  # (H, W)
    return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))  # mode L
