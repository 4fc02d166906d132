"""CIFAR-10 from the binary version: synthetic batches in the official format, extracted
and as a .tar.gz, read back pixel for pixel; truncated, corrupt and foreign files refused."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from diffkit.config import DataConfig
from diffkit.data import DataError, cifar, load_dataset

PER_FILE = 7  # records per synthetic batch file (the official ones hold 10000)
META = "\n".join(cifar.CLASSES) + "\n\n"


def _images(n: int, seed: int) -> np.ndarray:
    """(n, 3, 32, 32) uint8: record 0 pure red, record 1 with R[y, x] = x, G = y, B = 7;
    the rest random."""
    out = np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    out[0] = 0
    out[0, 0] = 255
    out[1, 0] = np.arange(32, dtype=np.uint8)[None, :]  # varies along a row
    out[1, 1] = np.arange(32, dtype=np.uint8)[:, None]  # varies down the rows
    out[1, 2] = 7
    return out


def _batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The official record layout: label byte, then the R, G and B planes, row-major."""
    rows = np.concatenate([labels[:, None], images.reshape(len(images), -1)], axis=1)
    return rows.astype(np.uint8).tobytes()  # (N, 3073) -> N * 3073 bytes


def _files() -> tuple[dict[str, bytes], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(file name -> bytes, split -> (images, labels)) of a synthetic binary version."""
    blobs, truth = {}, {"train": ([], []), "test": ([], [])}
    for k, name in enumerate((*cifar.FILES["train"], *cifar.FILES["test"])):
        images = _images(PER_FILE, seed=k)
        labels = (np.arange(PER_FILE) + k) % 10
        blobs[name] = _batch(images, labels)
        split = "test" if name.startswith("test") else "train"
        truth[split][0].append(images)
        truth[split][1].append(labels)
    blobs[cifar.META] = META.encode()
    joined = {s: (np.concatenate(i), np.concatenate(y)) for s, (i, y) in truth.items()}
    return blobs, joined


def _extracted(data_dir: Path, blobs: dict[str, bytes]) -> Path:
    folder = data_dir / "cifar10" / cifar.BINARY_DIR
    folder.mkdir(parents=True)
    for name, data in blobs.items():
        (folder / name).write_bytes(data)
    return folder


def _archive(data_dir: Path, blobs: dict[str, bytes]) -> Path:
    path = data_dir / "cifar10" / cifar.ARCHIVE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in blobs.items():
            info = tarfile.TarInfo(f"{cifar.BINARY_DIR}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _load(data_dir: Path, split: str = "train"):
    return load_dataset(DataConfig(dataset="cifar10"), data_dir, split, download=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", ["extracted", "archive"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_binary_version_round_trips_exactly(tmp_path: Path, layout, split):
    blobs, truth = _files()
    (_extracted if layout == "extracted" else _archive)(tmp_path, blobs)
    data = _load(tmp_path, split)
    images, labels = truth[split]
    assert data.images.shape == (len(images), 3, 32, 32) and data.images.dtype == torch.uint8
    assert torch.equal(data.images, torch.from_numpy(images))
    assert torch.equal(data.labels, torch.from_numpy(labels).long())
    assert data.class_names == cifar.CLASSES
    assert len(data) == (5 if split == "train" else 1) * PER_FILE


def test_channel_and_row_order(tmp_path: Path):
    blobs, _ = _files()
    _extracted(tmp_path, blobs)
    x = _load(tmp_path).images
    assert (x[0, 0] == 255).all() and (x[0, 1:] == 0).all()  # the red plane comes first
    assert x[1, 0, 5].tolist() == list(range(32))  # row-major: x varies fastest
    assert x[1, 1, :, 9].tolist() == list(range(32)) and (x[1, 2] == 7).all()


def test_train_files_are_read_in_order_and_limit_applies(tmp_path: Path):
    blobs, truth = _files()
    _archive(tmp_path, blobs)
    cfg = DataConfig(dataset="cifar10", limit=9)
    data = load_dataset(cfg, tmp_path, "train", download=False)
    assert torch.equal(data.images, torch.from_numpy(truth["train"][0][:9]))


def test_extracted_is_preferred_to_the_archive(tmp_path: Path):
    blobs, truth = _files()
    _extracted(tmp_path, blobs)
    (tmp_path / "cifar10" / cifar.ARCHIVE).write_bytes(b"not read")
    assert torch.equal(_load(tmp_path, "test").images, torch.from_numpy(truth["test"][0]))


def test_truncated_file_is_one_line_error(tmp_path: Path):
    blobs, _ = _files()
    folder = _extracted(tmp_path, blobs)
    (folder / "data_batch_2.bin").write_bytes(blobs["data_batch_2.bin"][:-100])
    with pytest.raises(DataError, match=r"data_batch_2\.bin holds 21411 bytes.*truncated") as e:
        _load(tmp_path)
    assert "\n" not in str(e.value)


def test_truncated_archive_is_one_line_error(tmp_path: Path):
    blobs, _ = _files()
    path = _archive(tmp_path, blobs)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"truncated or corrupt.*download cifar-10-binary") as e:
        _load(tmp_path, "test")
    assert "\n" not in str(e.value)


def test_corrupt_archive_is_caught_by_gzip(tmp_path: Path):
    blobs, _ = _files()
    path = _archive(tmp_path, blobs)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the compressed stream
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError):
        _load(tmp_path, "test")


def test_official_size_archive_is_md5_checked(tmp_path: Path, monkeypatch):
    # the MD5 applies to an archive of the official size; the synthetic one is made that size
    blobs, truth = _files()
    path = _archive(tmp_path, blobs)
    monkeypatch.setattr(cifar, "ARCHIVE_SIZE", path.stat().st_size)
    with pytest.raises(DataError, match=r"corrupt \(MD5 differs"):
        _load(tmp_path, "test")
    monkeypatch.setattr(cifar, "ARCHIVE_MD5", hashlib.md5(path.read_bytes()).hexdigest())
    assert torch.equal(_load(tmp_path, "test").images, torch.from_numpy(truth["test"][0]))


def test_labels_over_9_are_refused(tmp_path: Path):
    blobs, _ = _files()
    bad = bytearray(blobs["test_batch.bin"])
    bad[3 * cifar.RECORD] = 10  # record 3's label byte
    blobs["test_batch.bin"] = bytes(bad)
    _extracted(tmp_path, blobs)
    with pytest.raises(DataError, match="record 3 has label 10"):
        _load(tmp_path, "test")


@pytest.mark.parametrize("layout", ["extracted", "archive"])
def test_missing_train_file_is_named(tmp_path: Path, layout):
    blobs, _ = _files()
    del blobs["data_batch_4.bin"]
    (_extracted if layout == "extracted" else _archive)(tmp_path, blobs)
    with pytest.raises(DataError, match=r"lacks .*data_batch_4\.bin"):
        _load(tmp_path)


def test_more_records_than_an_official_batch_are_refused(tmp_path: Path, monkeypatch):
    blobs, _ = _files()
    _archive(tmp_path, blobs)
    monkeypatch.setattr(cifar, "MAX_RECORDS", PER_FILE - 1)
    with pytest.raises(DataError, match=f"not 1 to {PER_FILE - 1} records"):
        _load(tmp_path, "test")


def test_another_datasets_class_list_is_refused(tmp_path: Path):
    blobs, _ = _files()
    blobs[cifar.META] = b"apple\npear\n"
    _extracted(tmp_path, blobs)
    with pytest.raises(DataError, match="does not list CIFAR-10's ten classes"):
        _load(tmp_path, "test")


def test_neither_layout_names_both(tmp_path: Path):
    with pytest.raises(DataError) as e:
        _load(tmp_path)
    message = str(e.value)
    assert cifar.ARCHIVE in message and cifar.BINARY_DIR in message
    assert cifar.PYTHON_DIR in message and "\n" not in message
