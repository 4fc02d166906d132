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
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from torch import Tensor

from diffkit.data.images import ImageData, to_unit_range
from diffkit.data.loader import epoch_order, full_batches
from diffkit.errors import ConfigError, DataError
from diffkit.resources import available_memory

FORMAT = "diffkit-prepared-1"
MANIFEST = "manifest.json"
PREFIX = "prepared:"
HASH_LIMIT = 2 << 30  # files up to 2 GiB are re-hashed on every load; larger: sizes only


@dataclass(frozen=True)
class MappedImageData(ImageData):
    """An :class:`ImageData` whose ``images`` view a memory-mapped file (nothing loaded)."""

    path: Path = Path()


# ---------------------------------------------------------------------------------------
# The manifest's schema

MAX_MANIFEST_BYTES = 1 << 20  # a real manifest is well under a kilobyte
MAX_COUNT = 1 << 40  # images in a split: far past any disk, small enough to multiply safely
MAX_SIDE = 1 << 16

_FileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                                             max_length=255)]  # fmt: skip
"""A file inside the folder: a plain name, never a path (no ``/``, no ``..``)."""
_Digest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
_Strict = ConfigDict(strict=True, extra="ignore", frozen=True)


class SplitEntry(BaseModel):
    """One split of a manifest: how many images, in which files, with which sha256s."""

    model_config = _Strict
    count: int = Field(ge=1, le=MAX_COUNT)
    images: _FileName
    sha256_images: _Digest
    labels: _FileName | None = None
    sha256_labels: _Digest | None = None
    skipped: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _labels_have_a_digest(self) -> SplitEntry:
        if (self.labels is None) != (self.sha256_labels is None):
            raise ValueError("labels and sha256_labels must be given together")
        return self


class Manifest(BaseModel):
    """``manifest.json`` as :func:`diffkit.data.prepare.prepare` writes it; read through
    :func:`read_manifest`, which refuses anything else before a file is opened."""

    model_config = _Strict
    format: Literal["diffkit-prepared-1"]
    dataset: str
    shape: list[int] = Field(min_length=3, max_length=3)  # (C, H, W)
    class_names: list[str] = Field(default_factory=list)
    splits: dict[Literal["train", "test"], SplitEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _image_shape(self) -> Manifest:
        c, h, w = self.shape
        if c not in (1, 3) or h != w or not 1 <= h <= MAX_SIDE:
            raise ValueError(f"shape {self.shape} is not [1 or 3, side, side] (side up to "
                             f"{MAX_SIDE})")  # fmt: skip
        return self


def _first_problem(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {str(got)[:40]!r})"
    return f"{where + ': ' if where else ''}{msg}{shown}"


# ---------------------------------------------------------------------------------------
# Reading


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a prepared folder, validated against :class:`Manifest`; one-line
    DataError naming the folder and the first problem when it is not one."""
    path = Path(folder) / MANIFEST
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise DataError(f"{folder}: {MANIFEST} is larger than "
                            f"{MAX_MANIFEST_BYTES >> 20} MiB; not a prepared dataset")  # fmt: skip
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{folder} is not a prepared dataset (no {MANIFEST}; make one with "
                        "`diffkit data prepare`)") from None  # fmt: skip
    except (OSError, ValueError, RecursionError) as exc:
        raise DataError(f"{folder}: unreadable {MANIFEST} ({str(exc)[:200]})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DataError(f"{folder}: {MANIFEST} is not a {FORMAT} manifest")
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise DataError(f"{folder}: invalid {MANIFEST}: {_first_problem(exc)}; prepare it "
                        "again") from None  # fmt: skip
    return manifest.model_dump()


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
    shape = (entry["count"], *manifest["shape"])  # (N, C, H, W), validated ints
    nbytes = math.prod(shape)  # Python ints: no overflow, whatever the manifest claims
    images_file = folder / entry["images"]
    _check_file(images_file, nbytes, entry["sha256_images"])
    classes = tuple(manifest["class_names"])
    labels = None
    if entry["labels"] is not None:
        labels_file = folder / entry["labels"]
        _check_file(labels_file, 8 * shape[0], entry["sha256_labels"])
        labels = torch.from_numpy(np.fromfile(labels_file, dtype="<i8").astype(np.int64))
        _check_labels(labels, classes, labels_file)
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
            f"{path} holds {actual:,} bytes, the manifest says {size:,}: truncated or "
            "replaced; prepare it again"
        )
    if size <= HASH_LIMIT and _sha256(path) != digest:
        raise DataError(f"{path} does not match its sha256 in the manifest; prepare it again")


def _check_labels(labels: Tensor, classes: tuple[str, ...], path: Path) -> None:
    """Every label must index the manifest's classes (an embedding would be out of range)."""
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (classes and high >= len(classes)):
        bad = low if low < 0 else high
        raise DataError(f"{path} holds label {bad}; the manifest names {len(classes)} classes")


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
