"""keep_best: the best FID so far survives a restart through best.safetensors."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from diffkit.runs.checkpoint import load_checkpoint
from diffkit.runs.layout import RunDir
from diffkit.training.loop import _BestKeeper, _Position


def test_best_checkpoint_keeps_the_lowest_fid_across_restarts(tmp_path: Path):
    run = RunDir.create(tmp_path, "ddpm", "best")
    net, ema = nn.Linear(2, 2), nn.Linear(2, 2)
    keeper = _BestKeeper(run, {"method": "ddpm"})
    assert keeper.offer(5.0, net, ema, _Position(step=10, epoch=1))
    assert not keeper.offer(6.0, net, ema, _Position(step=20, epoch=2))
    again = _BestKeeper(run, {"method": "ddpm"})  # e.g. after --resume
    assert again.value == 5.0
    assert not again.offer(5.0, net, ema, _Position(step=30, epoch=3))
    assert again.offer(4.0, net, ema, _Position(step=40, epoch=4))
    ckpt = load_checkpoint(run.best_checkpoint)
    assert ckpt.train_state["best"] == {"fid": 4.0, "epoch": 4, "step": 40}
    assert set(ckpt.section("ema")) == {"weight", "bias"} and ckpt.config == {"method": "ddpm"}


def test_an_unreadable_best_file_is_replaced(tmp_path: Path):
    run = RunDir.create(tmp_path, "ddpm", "best")
    run.best_checkpoint.write_bytes(b"garbage")
    keeper = _BestKeeper(run, {})
    assert keeper.value == float("inf")
    assert keeper.offer(9.0, nn.Linear(1, 1), nn.Linear(1, 1), _Position())
