"""Prepared datasets: decoded once into raw uint8 arrays that training memory-maps.

``diffkit data prepare DATASET`` writes a folder::

    manifest.json          format, source dataset, shape, class names, per split: count,
                           file names and the sha256 of each file's bytes
    train-images.u8        (N, C, H, W) uint8, C-order, no header
    train-labels.i64       (N,) int64 little-endian (labelled datasets only)
    test-images.u8 ...

and ``prepared:FOLDER`` names it as a dataset. A split that fits in memory (under half of
what is available) is read into memory and batched by slicing, as every other dataset; a
larger one is memory-mapped and its batches gathered by worker processes into pinned
memory (:class:`MappedBatches`), drawing exactly the batches the in-memory path draws, so
the two give the same run. Raw arrays instead of an image container: a batch is a gather of
rows, with no decoding, and ``numpy.memmap`` pages them in on demand.

The folder is written under a temporary name and renamed when complete: a crash or Ctrl-C
leaves no half-prepared dataset under the real name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from diffkit.data.loader import to_unit_range
from diffkit.data.registry import DataError, ImageData
from diffkit.resources import available_memory, check_disk, human_bytes

if TYPE_CHECKING:
    from diffkit.config.run import DataConfig

FORMAT = "diffkit-prepared-1"
MANIFEST = "manifest.json"
PREFIX = "prepared:"
HASH_LIMIT = 2 << 30  # files up to 2 GiB are re-hashed on every load; larger: sizes only


@dataclass(frozen=True)
class MappedImageData(ImageData):
    """An :class:`ImageData` whose ``images`` view a memory-mapped file (nothing loaded)."""

    path: Path = Path()


# ---------------------------------------------------------------------------------------
# Writing


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
    from diffkit.data import registry

    if cfg.dataset.startswith("folder:"):
        if split != "train":
            return None, 0, (), (), 0
        folder = Path(cfg.dataset.removeprefix("folder:"))
        from diffkit.data.folders import folder_items

        paths, labels, classes = folder_items(folder)
        shape = (cfg.channels, cfg.image_size, cfg.image_size)
        return _decoded(paths, labels, cfg), len(paths), shape, classes, 0
    data = registry.load_dataset(cfg, data_dir, split)  # type: ignore[arg-type]
    labels = data.labels
    rows = ((data.images[i].numpy(), None if labels is None else int(labels[i]))
            for i in range(len(data)))  # fmt: skip
    return rows, len(data), tuple(data.images.shape[1:]), data.class_names, data.skipped


def _decoded(paths: list[Path], labels: list[int] | None, cfg: DataConfig):
    """Each readable image as uint8 (C, H, W); unreadable ones yield None (counted)."""
    from diffkit.data.registry import _read_image

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


# ---------------------------------------------------------------------------------------
# Reading


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a prepared folder; one-line DataError when it is not one."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except FileNotFoundError:
        raise DataError(f"{folder} is not a prepared dataset (no {MANIFEST}; make one with "
                        "`diffkit data prepare`)") from None  # fmt: skip
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder}: unreadable {MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{folder}: {MANIFEST} is not a {FORMAT} manifest")
    return manifest


def prepared_shape(folder: str | Path) -> tuple[int, int] | None:
    """(channels, size) of a prepared folder's images, or None when it has no readable
    manifest (the config then keeps the values it recorded)."""
    try:
        c, size, _ = read_manifest(Path(folder))["shape"]
        return int(c), int(size)
    except (DataError, KeyError, TypeError, ValueError):
        return None


def load_prepared(folder: Path, split: str, in_memory: bool | None = None) -> ImageData:
    """One split; ``in_memory`` None: read into memory when it takes under half of the
    available RAM, else memory-map it (:class:`MappedImageData`)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    entry = manifest["splits"].get(split)
    if entry is None:
        raise DataError(f"{folder} has no {split} split (it has "
                        f"{', '.join(manifest['splits'])})")  # fmt: skip
    shape = (int(entry["count"]), *(int(s) for s in manifest["shape"]))  # (N, C, H, W)
    images_file = folder / entry["images"]
    _check_file(images_file, int(np.prod(shape)), entry["sha256_images"])
    labels = None
    if entry.get("labels"):
        labels_file = folder / entry["labels"]
        _check_file(labels_file, 8 * shape[0], entry["sha256_labels"])
        labels = torch.from_numpy(np.fromfile(labels_file, dtype="<i8").astype(np.int64))
    classes = tuple(manifest.get("class_names") or ())
    nbytes = int(np.prod(shape))
    if in_memory is None:
        in_memory = nbytes < available_memory() // 2
    if in_memory:
        images = torch.from_numpy(np.fromfile(images_file, dtype=np.uint8).reshape(shape))
        return ImageData(images, labels, classes)
    # copy-on-write: torch needs a writable array; nothing is ever written back to the file
    mapped = np.memmap(images_file, dtype=np.uint8, mode="c", shape=shape)
    return MappedImageData(torch.from_numpy(mapped), labels, classes, path=images_file)


def _check_file(path: Path, size: int, digest: str) -> None:
    try:
        actual = path.stat().st_size
    except OSError:
        raise DataError(f"{path} is missing; prepare the dataset again") from None
    if actual != size:
        raise DataError(
            f"{path} holds {human_bytes(actual)}, the manifest says {human_bytes(size)}: "
            "truncated or replaced; prepare it again"
        )
    if size <= HASH_LIMIT and _sha256(path) != digest:
        raise DataError(f"{path} does not match its sha256 in the manifest; prepare it again")


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ---------------------------------------------------------------------------------------
# Batching a memory-mapped split


class _Rows(torch.utils.data.Dataset):
    """Item = one batch: the rows at a list of indices, gathered from the memory map."""

    def __init__(self, path: Path, shape: tuple[int, ...], labels: Tensor | None) -> None:
        self.path, self.shape, self.labels = path, shape, labels
        self._map: np.ndarray | None = None  # opened per worker process, on first use

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx: list[int]) -> tuple[Tensor, Tensor | None]:
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r", shape=self.shape)
        order = np.argsort(idx)  # read in file order (fewer seeks), return in batch order
        rows = np.empty((len(idx), *self.shape[1:]), dtype=np.uint8)
        rows[order] = self._map[np.asarray(idx)[order]]
        y = self.labels[torch.as_tensor(idx)] if self.labels is not None else None
        return torch.from_numpy(rows), y


class MappedBatches:
    """The batches of :class:`~diffkit.data.loader.TensorBatches` (same seeded permutation,
    same ranks, same order) from a memory-mapped split: ``workers`` processes (default:
    :func:`default_workers`) gather the rows, pinned when the device is a GPU, and each
    batch moves to the device as it comes."""

    def __init__(self, data: MappedImageData, batch_size: int, *, seed: int,
                 device: torch.device, rank: int = 0, world: int = 1,
                 workers: int | None = None) -> None:  # fmt: skip
        per_rank = len(data) // world
        if per_rank < batch_size:
            raise DataError(
                f"batch size {batch_size} is larger than the {per_rank} images per process"
            )
        self.rows = _Rows(data.path, tuple(data.images.shape), data.labels)
        self.n = len(data)
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.device = device
        self.batches_per_epoch = per_rank // batch_size
        self.workers = default_workers(device) if workers is None else workers

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _index_batches(self, epoch: int, start: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)  # as TensorBatches
        perm = torch.randperm(self.n, generator=g)[self.rank :: self.world]
        b = self.batch_size
        return [perm[i * b : (i + 1) * b].tolist() for i in range(start, self.batches_per_epoch)]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor | None]]:
        loader = torch.utils.data.DataLoader(
            self.rows, batch_size=None, sampler=self._index_batches(epoch, start),
            num_workers=self.workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers else None,
            persistent_workers=False,
        )  # fmt: skip
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True) if y is not None else None
            yield to_unit_range(x), y


def default_workers(device: torch.device) -> int:
    """Loader processes: none when training on the CPU (measured: on 2 cores a worker
    halves the gather rate, docs/benchmarks.md, and the network needs the cores), else the
    usable cores minus one for the training process, up to 8."""
    from diffkit.resources import available_cpus

    if device.type == "cpu":
        return 0
    return max(0, min(8, available_cpus() - 1))
