from pathlib import Path

import pytest
import torch

from diffkit.runs import Checkpoint, CheckpointError, RunDir, load_checkpoint, save_checkpoint
from diffkit.runs.checkpoint import prune_epoch_checkpoints, resolve_checkpoint


def test_round_trip_and_prefix_filter(tmp_path: Path):
    ckpt = Checkpoint(
        {"method": "ddpm", "train": {"lr": 0.1}},
        {"model.w": torch.randn(3, 2), "ema.w": torch.ones(2), "optim.0.step": torch.tensor(4.0)},
        {"position": {"step": 4}},
    )
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, ckpt)
    back = load_checkpoint(path)
    assert back.config == ckpt.config and back.train_state == ckpt.train_state
    assert torch.equal(back.tensors["model.w"], ckpt.tensors["model.w"])
    only_ema = load_checkpoint(path, prefixes=("ema",))
    assert set(only_ema.tensors) == {"ema.w"} and torch.equal(
        only_ema.section("ema")["w"], torch.ones(2)
    )
    assert not list(tmp_path.glob(".*tmp"))


def test_corrupt_and_foreign_files(tmp_path: Path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(bad)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not a diffkit checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")
    with pytest.raises(CheckpointError, match="no run or checkpoint"):
        resolve_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="has no checkpoints"):
        resolve_checkpoint(tmp_path)


def test_failed_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, Checkpoint({"v": 1}, {"model.w": torch.zeros(2)}))
    import diffkit.runs.layout as layout

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(layout.os, "replace", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, Checkpoint({"v": 2}, {"model.w": torch.ones(2)}))
    assert load_checkpoint(path).config == {"v": 1}
    assert not list(tmp_path.glob(".*tmp"))


def test_run_dir_layout_and_pruning(tmp_path: Path):
    a = RunDir.create(tmp_path, "ddpm", "x")
    b = RunDir.create(tmp_path, "ddpm", "x")
    assert a.path != b.path and a.checkpoints.is_dir() and a.samples.is_dir()
    for e in range(1, 6):
        save_checkpoint(a.epoch_checkpoint(e), Checkpoint({}, {"model.w": torch.zeros(1)}))
    prune_epoch_checkpoints(a, 2)
    assert sorted(p.name for p in a.checkpoints.iterdir()) == [
        "epoch-0004.safetensors",
        "epoch-0005.safetensors",
    ]
