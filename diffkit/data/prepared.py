"""Prepared datasets: decoded once into raw uint8 arrays that training memory-maps.

``diffkit data prepare DATASET`` (:mod:`diffkit.data.prepare`) writes a folder::

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

This module reads the format; it imports nothing of the dataset registry, which loads
``prepared:`` datasets through it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffkit.data.images import ImageData, to_unit_range
from diffkit.data.loader import epoch_order, full_batches
from diffkit.errors import ConfigError, DataError
from diffkit.resources import available_memory, human_bytes

FORMAT = "diffkit-prepared-1"
MANIFEST = "manifest.json"
PREFIX = "prepared:"
HASH_LIMIT = 2 << 30  # files up to 2 GiB are re-hashed on every load; larger: sizes only


@dataclass(frozen=True)
class MappedImageData(ImageData):
    """An :class:`ImageData` whose ``images`` view a memory-mapped file (nothing loaded)."""

    path: Path = Path()


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


def with_manifest_shape(section: Any) -> Any:
    """A config's data section (a mapping, before validation) with a ``prepared:DIR``
    dataset's image shape, its manifest's: recorded in the config (so a run knows it when
    the folder is gone) and checked against any value given (one-line ConfigError). Other
    datasets, and a folder without a readable manifest (its recorded values stand), come
    back unchanged.

    The config validates without reading the disk; this is the disk's part, applied where
    a run's config is made (:func:`diffkit.config.resolve.resolve_run_config`) or resumed.
    """
    if not isinstance(section, Mapping) or not str(section.get("dataset", "")).startswith(PREFIX):
        return section
    try:
        c, size, _ = read_manifest(Path(str(section["dataset"]).removeprefix(PREFIX)))["shape"]
        shape = int(c), int(size)
    except (DataError, KeyError, TypeError, ValueError):  # gone: the recorded values stand
        return section
    out = dict(section)
    for key, want in zip(("channels", "image_size"), shape, strict=True):
        given = section.get(key)
        try:
            differs = given is not None and int(given) != want
        except ValueError as exc:  # not a number: said as the config's validation said it
            raise ConfigError(f"invalid data: {exc}") from None
        if differs:
            raise ConfigError(f"invalid data: data.{key}={given} differs from {section['dataset']}"
                              f"'s images ({shape[0]}x{shape[1]}x{shape[1]})")  # fmt: skip
        out[key] = want
    return out


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
        self.batches_per_epoch = full_batches(len(data), batch_size, world)
        self.rows = _Rows(data.path, tuple(data.images.shape), data.labels)
        self.n = len(data)
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.device = device
        self.workers = default_workers(device) if workers is None else workers

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _index_batches(self, epoch: int, start: int) -> list[list[int]]:
        perm = epoch_order(self.seed, epoch, self.n, self.rank, self.world)
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
