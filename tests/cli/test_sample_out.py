"""`diffkit sample --out`: never overwrites without --overwrite, streams shards, and a
crash or Ctrl-C half-way leaves the earlier folder as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import diffkit.runs.samples as samples_mod
from diffkit.runs.samples import read_samples, sample_shards
from tests.cli.util import TINY, invoke, last_line


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir: Path) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return last_line(invoke("train", "ddpm", *TINY, "--data-dir", data_dir, "--runs-dir", runs))


def test_existing_out_is_refused_then_replaced_with_overwrite(run, tmp_path):
    out = tmp_path / "o"
    assert last_line(invoke("sample", run, "-n", "3", "--steps", "2", "--out", out)) == out
    first = read_samples(out)["samples"]
    result = invoke("sample", run, "-n", "5", "--steps", "2", "--out", out)
    assert result.exit_code == 2 and "--overwrite" in result.stderr
    assert torch_equal(read_samples(out)["samples"], first)
    last_line(invoke("sample", run, "-n", "5", "--steps", "2", "--out", out, "--overwrite"))
    assert read_samples(out)["samples"].shape[0] == 5
    assert json.loads((out / "sample.json").read_text())["n"] == 5


def test_default_out_never_overwrites(run):
    a = last_line(invoke("sample", run, "-n", "2", "--steps", "1"))
    b = last_line(invoke("sample", run, "-n", "2", "--steps", "1"))
    assert a != b and a.is_dir() and b.is_dir()


def test_streams_into_shards_and_caps_the_grid(run, tmp_path, monkeypatch):
    monkeypatch.setattr(samples_mod, "SHARD_SIZE", 4)
    monkeypatch.setattr(samples_mod, "GRID_MAX", 6)
    out = last_line(invoke("sample", run, "-n", "10", "--steps", "1", "--batch-size", "3",
                           "--out", tmp_path / "o"))  # fmt: skip
    assert [p.name for p in sample_shards(out)] == [
        f"samples-0000{i}.safetensors" for i in range(3)
    ]
    assert read_samples(out)["samples"].shape[0] == 10
    meta = json.loads((out / "sample.json").read_text())
    assert meta["files"] == [p.name for p in sample_shards(out)] and meta["n"] == 10


def test_interrupt_keeps_the_earlier_folder(run, tmp_path, monkeypatch):
    out = tmp_path / "o"
    last_line(invoke("sample", run, "-n", "3", "--steps", "2", "--out", out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = {"n": 0}
    real_add = samples_mod.SampleWriter.add

    def add_then_interrupt(self, images, labels):
        real_add(self, images, labels)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(samples_mod.SampleWriter, "add", add_then_interrupt)
    result = invoke("sample", run, "-n", "9", "--steps", "1", "--batch-size", "3", "--out", out,
                    "--overwrite")  # fmt: skip
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no partial folder left


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)
