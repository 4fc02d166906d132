from pathlib import Path

import pytest
import torch

from diffkit.runs import Checkpoint, CheckpointError, RunDir, load_checkpoint, save_checkpoint
from diffkit.runs.checkpoint import (
    keep_numbered,
    numbered_checkpoints,
    prune_checkpoints,
    resolve_checkpoint,
)


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
    prune_checkpoints(a, 2)
    assert sorted(p.name for p in a.checkpoints.iterdir()) == [
        "epoch-0004.safetensors",
        "epoch-0005.safetensors",
    ]


def _at_step(step: int) -> Checkpoint:
    return Checkpoint({}, {"model.w": torch.full((1,), float(step))},
                      {"position": {"step": step}})  # fmt: skip


def test_numbered_checkpoints_are_ordered_by_their_step(tmp_path: Path):
    """Epoch and step files interleave by the step they were written at, not by name."""
    run = RunDir.create(tmp_path, "ddpm", "x")
    for path, step in [(run.step_checkpoint(50), 50), (run.epoch_checkpoint(1), 80),
                       (run.step_checkpoint(100), 100), (run.epoch_checkpoint(2), 160),
                       (run.step_checkpoint(150), 150)]:  # fmt: skip
        save_checkpoint(path, _at_step(step))
    names = [p.name for p in numbered_checkpoints(run)]
    assert names == ["step-0000050.safetensors", "epoch-0001.safetensors",
                     "step-0000100.safetensors", "step-0000150.safetensors",
                     "epoch-0002.safetensors"]  # fmt: skip
    prune_checkpoints(run, 2)
    assert [p.name for p in numbered_checkpoints(run)] == names[-2:]


def test_keep_numbered_copies_last_and_survives_its_replacement(tmp_path: Path):
    """The numbered copy keeps its bytes when ``last`` is replaced (atomically) later."""
    run = RunDir.create(tmp_path, "ddpm", "x")
    save_checkpoint(run.last_checkpoint, _at_step(10))
    keep_numbered(run, run.last_checkpoint, run.step_checkpoint(10), keep=1)
    save_checkpoint(run.last_checkpoint, _at_step(20))
    keep_numbered(run, run.last_checkpoint, run.step_checkpoint(20), keep=1)
    assert [p.name for p in numbered_checkpoints(run)] == ["step-0000020.safetensors"]
    save_checkpoint(run.last_checkpoint, _at_step(30))
    assert load_checkpoint(run.step_checkpoint(20)).tensors["model.w"].item() == 20.0
    assert load_checkpoint(run.last_checkpoint).tensors["model.w"].item() == 30.0
    assert not list(run.checkpoints.glob(".*tmp"))
