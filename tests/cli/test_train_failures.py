"""How a training run that fails says so: a full disk at a checkpoint and a NaN loss each
end with one true line about what is on disk."""

from __future__ import annotations

import errno
from pathlib import Path

import torch

import diffkit.methods.generative as generative
import diffkit.training.loop as loop
from diffkit.runs import load_checkpoint
from tests.cli.util import invoke


def _args(data_dir: Path, runs: Path, *extra: str) -> list:
    return ["train", "ddpm", "--preset", "tiny", "--limit-data", "32", "--batch-size", "16",
            "--sample-every", "0", "--data-dir", data_dir, "--runs-dir", runs, *extra]  # fmt: skip


def test_full_disk_at_a_checkpoint_keeps_the_previous_one(data_dir, tmp_path, monkeypatch):
    real = loop.save_checkpoint
    calls = {"n": 0}

    def fills_up(path, ckpt):
        calls["n"] += 1
        if calls["n"] > 1:  # epoch 1 wrote last (epoch-0001 links it); epoch 2 finds it full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, ckpt)

    monkeypatch.setattr(loop, "save_checkpoint", fills_up)
    result = invoke(*_args(data_dir, tmp_path, "--epochs", "3"))
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot write a checkpoint at step 4") and "No space" in line
    assert "last.safetensors is intact" in line and "Traceback" not in result.output
    (run,) = (tmp_path / "ddpm").iterdir()
    state = load_checkpoint(run / "checkpoints" / "last.safetensors").train_state
    assert state["position"]["step"] == 2  # the epoch-1 checkpoint, whole
    assert not list(run.rglob("*.tmp")) and not (run / ".lock").exists()  # lock released


def test_nan_before_the_first_checkpoint_says_none_was_written(data_dir, tmp_path, monkeypatch):
    def nan_objective(cfg, paired=False, device=None):
        return lambda net, x, y, g: (
            net(x, torch.zeros(x.shape[0], dtype=torch.long)).sum() * float("nan")
        )

    monkeypatch.setattr(generative, "objective_for", nan_objective)
    result = invoke(*_args(data_dir, tmp_path, "--epochs", "2"))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].endswith("stopped, no checkpoint was written")


def test_nan_after_a_checkpoint_names_it(data_dir, tmp_path, monkeypatch):
    real = generative.objective_for
    steps = {"n": 0}

    def late_nan(cfg, paired=False, device=None):
        inner = real(cfg, paired, device)

        def objective(net, x, y, g):
            steps["n"] += 1
            loss = inner(net, x, y, g)
            return loss * float("nan") if steps["n"] > 2 else loss

        return objective

    monkeypatch.setattr(generative, "objective_for", late_nan)
    result = invoke(*_args(data_dir, tmp_path, "--epochs", "3"))
    assert result.exit_code == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "the last good checkpoint is kept at" in line and "last.safetensors" in line
