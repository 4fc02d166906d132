"""CIFAR-10 from the official binary version, read with numpy: nothing is unpickled.

The binary version (https://www.cs.toronto.edu/~kriz/cifar.html) is
``cifar-10-binary.tar.gz`` holding ``cifar-10-batches-bin/`` with ``data_batch_1.bin`` ..
``data_batch_5.bin`` (train), ``test_batch.bin`` and ``batches.meta.txt`` (the class names,
one a line). A batch file is a run of 3073-byte records: one label byte (0-9), then the
1024 red, the 1024 green and the 1024 blue values of a 32x32 image, each plane row-major;
the official files hold 10000 records each.

It is read from ``DATA_DIR/cifar10/cifar-10-batches-bin/`` (extracted) or straight from
``DATA_DIR/cifar10/cifar-10-binary.tar.gz`` (members read in memory, nothing extracted).
When neither is there, torchvision's python version (``cifar-10-batches-py/``, which
torchvision unpickles; also what ``download`` fetches) is used as before.

Integrity: an archive of the official size is checked against the official MD5, and every
archive is read to its end so that gzip's CRC-32 covers the whole stream; an archive of
another size is not the official file (a repack, or a truncated download, which gzip then
reports). Extracted files have no published digests: their structure is checked (the
expected files, whole records, at most 10000 each, labels 0-9, the class names).
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from diffkit.errors import DataError
from diffkit.resources import check_memory

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # the MD5 published on URL
ARCHIVE_SIZE = 170_052_171  # bytes of the official archive: the size its MD5 is checked at
BINARY_DIR = "cifar-10-batches-bin"
PYTHON_DIR = "cifar-10-batches-py"
META = "batches.meta.txt"
RECORD = 1 + 3 * 32 * 32  # bytes: the label, then the R, G and B planes of 32x32
MAX_RECORDS = 10_000  # per file, as in every official batch
FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)}


def load_cifar10(data_dir: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of one split, from the binary
    version when it is there, else from torchvision's python version."""
    root = Path(data_dir) / "cifar10"
    names = FILES[split]
    if (root / BINARY_DIR).is_dir():
        blobs = _read_extracted(root / BINARY_DIR, names)
    elif (root / ARCHIVE).is_file():
        blobs = _read_archive(root / ARCHIVE, names)
    else:
        return _load_torchvision(root, split, download)
    parts = [decode_batch(blobs[name], name) for name in names]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))  # (N, 3, 32, 32)
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]).astype(np.int64))  # (N,)
    return images, labels


def decode_batch(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file's bytes -> (images uint8 (N, 3, 32, 32), labels uint8 (N,)); a size
    that is not whole records or a label over 9 is a DataError naming ``where``."""
    _check_size(len(data), where)
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)  # (N, 3073)
    labels = rows[:, 0]
    if labels.max() > 9:
        i = int(labels.argmax())
        raise DataError(
            f"{where}: record {i} has label {labels[i]}, CIFAR-10's are 0-9 (not a CIFAR-10 "
            f"batch); get the binary version again from {URL}"
        )
    # (N, 3072) -> (N, 3, 32, 32): the red, green and blue planes, each row-major
    return rows[:, 1:].reshape(-1, 3, 32, 32), labels


def _check_size(size: int, where: str) -> None:
    """Whole records, at least one and at most an official batch's, before reading."""
    if size == 0 or size % RECORD or size > MAX_RECORDS * RECORD:
        what = "is empty" if size == 0 else f"holds {size} bytes"
        raise DataError(
            f"{where} {what}, not 1 to {MAX_RECORDS} records of {RECORD} bytes (truncated or "
            f"not CIFAR-10's binary version); get cifar-10-binary.tar.gz again from {URL}"
        )


def _check_meta(text: bytes, where: str) -> None:
    names = tuple(line.strip() for line in text.decode("ascii", "replace").splitlines())
    if tuple(n for n in names if n) != CLASSES:
        raise DataError(f"{where} does not list CIFAR-10's ten classes (another dataset?); "
                        f"get the binary version again from {URL}")  # fmt: skip


def _read_extracted(folder: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The batch files of ``names`` from an extracted ``cifar-10-batches-bin/``."""
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder} lacks {', '.join(missing)}: extract the whole "
                        f"{ARCHIVE} there (from {URL})")  # fmt: skip
    for n in names:
        _check_size((folder / n).stat().st_size, str(folder / n))
    check_memory(2 * sum((folder / n).stat().st_size for n in names), "loading cifar10")
    if (folder / META).is_file():
        _check_meta((folder / META).read_bytes()[:4096], str(folder / META))
    return {n: (folder / n).read_bytes() for n in names}


def _read_archive(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The members ``names`` of the archive, read in memory in one pass; the stream is
    read to its end so that gzip checks its CRC-32 and length."""
    again = f"delete it and download {ARCHIVE} again from {URL}"
    if path.stat().st_size == ARCHIVE_SIZE and _md5(path) != ARCHIVE_MD5:
        raise DataError(f"{path} is corrupt (MD5 differs from the published one); {again}")
    check_memory(2 * len(names) * MAX_RECORDS * RECORD, "loading cifar10")
    wanted = {f"{BINARY_DIR}/{n}": n for n in (*names, META)}
    blobs: dict[str, bytes] = {}
    try:
        with gzip.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None:
                    continue
                where = f"{path}:{member.name}"
                if not member.isfile():
                    raise DataError(f"{where} is not a regular file; {again}")
                if name != META:
                    _check_size(member.size, where)
                elif member.size > 4096:
                    raise DataError(f"{where} holds {member.size} bytes, not ten names; {again}")
                blobs[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
            while stream.read(1 << 20):  # the rest: gzip checks its CRC at the end
                pass
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path} is truncated or corrupt ({exc}); {again}") from None
    missing = [n for n in names if n not in blobs]
    if missing:
        raise DataError(f"{path} lacks {BINARY_DIR}/{', '.join(missing)}; {again}")
    if META in blobs:
        _check_meta(blobs.pop(META), f"{path}:{BINARY_DIR}/{META}")
    return blobs


def _md5(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _load_torchvision(root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    """torchvision's python version (``cifar-10-batches-py/``, downloaded if allowed)."""
    from torchvision import datasets

    try:
        ds = datasets.CIFAR10(str(root), train=split == "train", download=download)
    except Exception as exc:
        raise DataError(
            f"cifar10 not found in {root}: put {ARCHIVE} (or its extracted {BINARY_DIR}/) "
            f"there, from {URL}, or torchvision's extracted {PYTHON_DIR}/ "
            f"({type(exc).__name__})"
        ) from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    return images, torch.tensor(ds.targets, dtype=torch.long)
