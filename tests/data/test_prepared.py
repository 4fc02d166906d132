"""Prepared datasets: the raw arrays round-trip to the source dataset exactly, in memory and
memory-mapped; the memory-mapped batches are the in-memory batches; a crash leaves nothing
under the real name; damaged files are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffkit.config.run import DataConfig
from diffkit.data.batching import make_batches
from diffkit.data.loader import TensorBatches
from diffkit.data.prepare import prepare
from diffkit.data.prepared import (
    MANIFEST,
    MappedBatches,
    MappedImageData,
    load_prepared,
    read_manifest,
    with_manifest_shape,
)
from diffkit.data.registry import DataError, load_dataset
from diffkit.errors import ConfigError

MNIST = DataConfig(dataset="mnist", limit=300)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("p") / "mnist"
    prepare(MNIST, data_dir, out)
    return out


@pytest.mark.parametrize("in_memory", [True, False])
def test_round_trip_equals_the_source(prepared: Path, data_dir: Path, in_memory: bool):
    for split in ("train", "test"):
        want = load_dataset(MNIST, data_dir, split)
        got = load_prepared(prepared, split, in_memory=in_memory)
        assert isinstance(got, MappedImageData) == (not in_memory)
        assert torch.equal(got.images, want.images) and torch.equal(got.labels, want.labels)
        assert got.class_names == want.class_names
    manifest = read_manifest(prepared)
    assert manifest["shape"] == [1, 28, 28] and manifest["dataset"] == "mnist"
    assert manifest["splits"]["train"]["count"] == 300


def test_mapped_batches_are_the_in_memory_batches(prepared: Path):
    memory = load_prepared(prepared, "train", in_memory=True)
    mapped = load_prepared(prepared, "train", in_memory=False)
    cpu = torch.device("cpu")
    for rank in (0, 1):
        a = TensorBatches(memory, 32, seed=3, device=cpu, rank=rank, world=2)
        for workers in (0, 2):
            b = MappedBatches(mapped, 32, seed=3, device=cpu, rank=rank, world=2,
                              workers=workers)  # fmt: skip
            assert len(a) == len(b) == 4
            for epoch, start in ((0, 0), (1, 2)):  # a resume mid-epoch starts at batch 2
                pairs = list(zip(a.epoch(epoch, start), b.epoch(epoch, start), strict=True))
                assert len(pairs) == 4 - start
                for (xa, ya), (xb, yb) in pairs:
                    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert isinstance(make_batches(mapped, 32, seed=0, device=cpu), MappedBatches)
    assert isinstance(make_batches(memory, 32, seed=0, device=cpu), TensorBatches)


def test_an_interrupted_prepare_leaves_nothing(tmp_path: Path, data_dir: Path):
    out = tmp_path / "p"
    seen = []

    def stop_halfway(n: int) -> None:
        seen.append(n)
        if len(seen) == 150:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(MNIST, data_dir, out, on_image=stop_halfway)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="already exists"):
        prepare(MNIST, data_dir, tmp_path)


def test_damaged_files_are_refused(prepared: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    images = copy / "train-images.u8"
    data = bytearray(images.read_bytes())
    data[1000] ^= 0xFF
    images.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match its sha256"):
        load_prepared(copy, "train")
    images.write_bytes(bytes(data[:-10]))
    with pytest.raises(DataError, match="truncated or replaced"):
        load_prepared(copy, "train")
    with pytest.raises(DataError, match="no valid split"):
        load_prepared(copy, "valid")
    (copy / MANIFEST).write_text(json.dumps({"format": "other"}))
    with pytest.raises(DataError, match="is not a diffkit-prepared-1 manifest"):
        read_manifest(copy)
    with pytest.raises(DataError, match="is not a prepared dataset"):
        read_manifest(tmp_path)


def test_a_prepared_section_takes_its_manifest_shape(prepared: Path, tmp_path: Path):
    name = f"prepared:{prepared}"
    assert with_manifest_shape({"dataset": name}) == {"dataset": name, "channels": 1,
                                                      "image_size": 28}  # fmt: skip
    assert with_manifest_shape({"dataset": name, "channels": "1"})["channels"] == 1
    with pytest.raises(ConfigError, match=rf"^invalid data: data.image_size=32 differs from "
                       rf"{name}'s images \(1x28x28\)$"):  # fmt: skip
        with_manifest_shape({"dataset": name, "image_size": 32})
    gone = {"dataset": f"prepared:{tmp_path / 'gone'}", "image_size": 5}
    for section in ({"dataset": "mnist", "image_size": 5}, gone, None):
        assert with_manifest_shape(section) == section  # as given: the recorded values stand
