"""``diffkit data prepare``: decode a dataset once into the raw arrays of
:mod:`diffkit.data.prepared` (its format and reader).

The folder is written under a temporary name and renamed when complete: a crash or Ctrl-C
leaves no half-prepared dataset under the real name. A folder dataset is decoded image by
image straight into the file, so one larger than memory prepares in constant memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffkit.data.folders import folder_items
from diffkit.data.prepared import FORMAT, MANIFEST, PREFIX
from diffkit.data.registry import _read_image, load_dataset
from diffkit.errors import DataError
from diffkit.resources import check_disk

if TYPE_CHECKING:
    from diffkit.config.run import DataConfig


def prepare(
    cfg: DataConfig,
    data_dir: Path,
    out: Path,
    splits: Iterable[str] = ("train", "test"),
    on_image: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Decode the dataset ``cfg`` names (at ``cfg.image_size`` / ``cfg.channels`` for image
    folders, the native size otherwise) into ``out``; returns the manifest. ``out`` must not
    exist. Folders are decoded image by image straight into the file, so a dataset larger
    than memory prepares in constant memory."""
    out = Path(out)
    if out.exists():
        raise DataError(f"{out} already exists; pick another --out or delete it")
    if cfg.dataset.startswith(PREFIX):
        raise DataError(f"{cfg.dataset} is prepared already")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    manifest: dict[str, Any] = {"format": FORMAT, "dataset": cfg.dataset, "splits": {}}
    try:
        for split in splits:
            rows, count, shape, classes, skipped = _source_rows(cfg, Path(data_dir), split)
            if rows is None:  # e.g. a folder: dataset has a train split only
                continue
            check_disk(count * int(np.prod(shape)) + 8 * count, tmp, f"preparing {split}")
            entry = _write_split(tmp, split, rows, shape, on_image)
            entry["skipped"] += skipped  # unreadable files the source loader left out
            manifest["splits"][split] = entry
            manifest |= {"shape": list(shape), "class_names": list(classes)}
        if not manifest["splits"]:
            raise DataError(f"{cfg.dataset} has none of the splits {', '.join(splits)}")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _source_rows(cfg: DataConfig, data_dir: Path, split: str):
    """(rows: iterator of (uint8 (C, H, W), label or None) or None, count, (C, H, W),
    class names, skipped files) of one split of the source dataset."""
    if cfg.dataset.startswith("folder:"):
        if split != "train":
            return None, 0, (), (), 0
        folder = Path(cfg.dataset.removeprefix("folder:"))
        paths, labels, classes = folder_items(folder)
        shape = (cfg.channels, cfg.image_size, cfg.image_size)
        return _decoded(paths, labels, cfg), len(paths), shape, classes, 0
    data = load_dataset(cfg, data_dir, split)  # type: ignore[arg-type]
    labels = data.labels
    rows = ((data.images[i].numpy(), None if labels is None else int(labels[i]))
            for i in range(len(data)))  # fmt: skip
    return rows, len(data), tuple(data.images.shape[1:]), data.class_names, data.skipped


def _decoded(paths: list[Path], labels: list[int] | None, cfg: DataConfig):
    """Each readable image as uint8 (C, H, W); unreadable ones yield None (counted)."""
    for i, path in enumerate(paths):
        a = _read_image(path, cfg.image_size, cfg.channels)  # (H, W, C) or None
        yield (None if a is None else a.transpose(2, 0, 1)), (labels[i] if labels else None)


def _write_split(folder: Path, split: str, rows: Iterator, shape: tuple[int, ...],
                 on_image: Callable[[int], None]) -> dict[str, Any]:  # fmt: skip
    """Stream ``rows`` into ``<split>-images.u8`` (+ labels), hashing the bytes written."""
    images_name, labels_name = f"{split}-images.u8", f"{split}-labels.i64"
    h_images, h_labels = hashlib.sha256(), hashlib.sha256()
    written, skipped, labelled = 0, 0, None
    with (folder / images_name).open("wb") as fi, (folder / labels_name).open("wb") as fl:
        for image, label in rows:
            if image is None:
                skipped += 1
                on_image(1)
                continue
            if tuple(image.shape) != tuple(shape) or image.dtype != np.uint8:
                raise DataError(f"{split} image {written}: shape {tuple(image.shape)}, "
                                f"not {tuple(shape)}")  # fmt: skip
            raw = np.ascontiguousarray(image).tobytes()
            fi.write(raw)
            h_images.update(raw)
            labelled = label is not None if labelled is None else labelled
            if labelled:
                b = np.int64(label).astype("<i8").tobytes()
                fl.write(b)
                h_labels.update(b)
            written += 1
            on_image(1)
    if written == 0:
        raise DataError(f"no readable images in the {split} split")
    entry = {"count": written, "images": images_name, "sha256_images": h_images.hexdigest(),
             "labels": None, "sha256_labels": None, "skipped": skipped}  # fmt: skip
    if labelled:
        entry |= {"labels": labels_name, "sha256_labels": h_labels.hexdigest()}
    else:
        (folder / labels_name).unlink()
    return entry
