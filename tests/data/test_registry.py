import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffkit.config import DataConfig
from diffkit.data import DataError, TensorBatches, load_dataset
from diffkit.data.idx import read_idx


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_round_trip(tmp_path: Path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    assert torch.equal(read_idx(tmp_path / "a.gz"), torch.from_numpy(arr))


def test_idx_rejects_other_files(tmp_path: Path):
    (tmp_path / "x").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "x")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_datasets_load_in_memory(data_dir: Path, name):
    if not (data_dir / name).is_dir():
        pytest.skip(f"{name} not present")
    test = load_dataset(DataConfig(dataset=name), data_dir, "test", download=False)
    assert test.images.shape == (10_000, 1, 28, 28) and test.images.dtype == torch.uint8
    assert test.labels.shape == (10_000,) and set(test.labels.unique().tolist()) == set(range(10))
    part = load_dataset(DataConfig(dataset=name, limit=100), data_dir, "train", download=False)
    assert len(part) == 100 and len(part.class_names) == 10


def test_missing_files_say_where_to_put_them(tmp_path: Path):
    with pytest.raises(DataError, match=r"put train-images-idx3-ubyte.gz and .* in .*mnist"):
        load_dataset(DataConfig(dataset="mnist"), tmp_path, download=False)


def test_corrupt_file_is_detected(tmp_path: Path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        write_idx(folder / name, np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(DataError, match="corrupt"):
        load_dataset(DataConfig(dataset="mnist"), tmp_path, download=False)


@pytest.mark.parametrize("channels", [1, 3])
def test_image_folder(tmp_path: Path, channels):
    for i in range(5):
        Image.new("RGB", (40, 30), (i * 40, 10, 200)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    cfg = DataConfig(dataset=f"folder:{tmp_path}", image_size=16, channels=channels)
    data = load_dataset(cfg, tmp_path)
    assert data.images.shape == (5, channels, 16, 16) and data.labels is None


def test_empty_folder_errors(tmp_path: Path):
    with pytest.raises(DataError, match="no images"):
        load_dataset(DataConfig(dataset=f"folder:{tmp_path}"), tmp_path)


def test_batches_are_sharded_reproducible_and_in_range():
    from diffkit.data import ImageData

    data = ImageData(torch.arange(100, dtype=torch.uint8).reshape(100, 1, 1, 1), torch.arange(100))
    shards = [
        TensorBatches(data, 10, seed=3, device=torch.device("cpu"), rank=r, world=2)
        for r in range(2)
    ]
    seen = [torch.cat([y for _, y in s.epoch(0)]) for s in shards]
    assert len(shards[0]) == 5
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    assert len(set(seen[0].tolist()) | set(seen[1].tolist())) == 100
    again = torch.cat([y for _, y in shards[0].epoch(0)])
    assert torch.equal(again, seen[0])
    tail = torch.cat([y for _, y in shards[0].epoch(0, start=3)])
    assert torch.equal(tail, seen[0][30:])
    x, _ = next(shards[0].epoch(1))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


def _png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG whose IHDR claims ``width`` x ``height`` but holds one tiny IDAT:
    what a decompression bomb looks like before decoding."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_image_folder_skips_corrupt_and_oversized_files(tmp_path: Path):
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "x.png").write_bytes(b"not an image at all")
    (tmp_path / "bomb.png").write_bytes(_png_claiming(30000, 30000))
    cfg = DataConfig(dataset=f"folder:{tmp_path}", image_size=8, channels=3)
    data = load_dataset(cfg, tmp_path)
    assert data.images.shape == (3, 3, 8, 8) and data.skipped == 2
    assert load_dataset(cfg.model_copy(update={"limit": 2}), tmp_path).skipped == 2


def test_image_folder_limit_is_the_setting_not_pils(tmp_path: Path, monkeypatch):
    # one limit, DIFFKIT_MAX_IMAGE_PIXELS: PIL's own global neither fires first nor changes
    Image.new("L", (12, 12)).save(tmp_path / "big.png")  # 144 px
    Image.new("L", (8, 8)).save(tmp_path / "ok.png")
    cfg = DataConfig(dataset=f"folder:{tmp_path}", channels=1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL alone would warn on big.png
    assert len(load_dataset(cfg, tmp_path)) == 2 and Image.MAX_IMAGE_PIXELS == 100
    monkeypatch.setenv("DIFFKIT_MAX_IMAGE_PIXELS", "100")
    data = load_dataset(cfg, tmp_path)
    assert len(data) == 1 and data.skipped == 1


def test_image_folder_of_only_bad_files_errors(tmp_path: Path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "b.jpg").write_bytes(_png_claiming(30000, 30000))
    with pytest.raises(DataError, match=r"all 2 images .* are unreadable"):
        load_dataset(DataConfig(dataset=f"folder:{tmp_path}"), tmp_path)


def test_image_folder_checks_the_header_before_decoding(tmp_path: Path, monkeypatch):
    # 9000 x 9000 is under PIL's own bomb limit: only diffkit's header check stops it
    (tmp_path / "big.png").write_bytes(_png_claiming(9000, 9000))
    Image.new("L", (8, 8)).save(tmp_path / "ok.png")
    decoded = []
    convert = Image.Image.convert

    def spy(im: Image.Image, *args):
        decoded.append(im.size)
        return convert(im, *args)

    monkeypatch.setattr(Image.Image, "convert", spy)
    data = load_dataset(DataConfig(dataset=f"folder:{tmp_path}", channels=1), tmp_path)
    assert data.skipped == 1 and decoded == [(8, 8)]
