"""``--grad-accum K`` on every command that trains through the shared loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from diffkit.cli.app import app
from tests.cli.util import TINY, invoke, last_line

TRAINING = [("train", name) for name in ("ddpm", "rf", "ldm", "vae", "classifier", "controlnet",
                                         "denoiser")] + [("reflow", "train")]  # fmt: skip


@pytest.mark.parametrize("path", TRAINING, ids=" ".join)
def test_every_training_command_takes_grad_accum(path):
    group = typer.main.get_command(app)
    command = group.commands[path[0]].commands[path[1]]
    assert "--grad-accum" in {opt for p in command.params for opt in p.opts}


def test_grad_accum_trains_and_is_recorded(data_dir: Path, tmp_path: Path):
    run = last_line(invoke("train", "ddpm", *TINY, "--grad-accum", "2", "--data-dir", data_dir,
                           "--runs-dir", tmp_path))  # fmt: skip
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["grad_accum"] == 2 and cfg["train"]["batch_size"] == 16
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reason"] == "finished" and summary["steps"] == 3  # a step is still a batch


@pytest.mark.parametrize("command", ["rf", "vae", "classifier", "denoiser"])
def test_grad_accum_reaches_the_config(command: str):
    out = invoke("train", command, "--grad-accum", "4", "--print-config")
    assert out.exit_code == 0, out.output
    assert "grad_accum = 4" in out.stdout


def test_a_batch_size_that_grad_accum_does_not_divide_is_one_line_exit_2(tmp_path: Path):
    out = invoke("train", "ddpm", "--preset", "tiny", "--batch-size", "30", "--grad-accum", "4",
                 "--runs-dir", tmp_path)  # fmt: skip
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "batch_size 30 is not divisible by train.grad_accum 4" in lines[0]
    assert not any(tmp_path.iterdir())  # refused before a run folder exists
