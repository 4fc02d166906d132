"""--logger and --compile on the training commands, at the CLI boundary."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import typer

from diffkit.cli.app import app
from tests.cli.util import TINY, invoke, last_line

TRAINING = [("train", c) for c in ("ddpm", "ldm", "rf", "vae", "classifier", "controlnet",
                                   "denoiser")] + [("reflow", "train")]  # fmt: skip


def test_every_training_command_takes_logger_and_compile():
    group = typer.main.get_command(app)
    for path in TRAINING:
        command = group
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        flags = {opt for p in command.params for opt in p.opts}
        assert {"--logger", "--compile"} <= flags, " ".join(path)


def test_train_logs_to_csv_and_keeps_loggers_out_of_the_config(data_dir: Path, tmp_path: Path):
    from diffkit.runs import read_metrics

    loggers = "csv,tensorboard" if importlib.util.find_spec("tensorboard") else "csv"
    run = last_line(invoke("train", "ddpm", *TINY, "--data-dir", data_dir, "--runs-dir",
                           tmp_path, "--logger", loggers))  # fmt: skip
    with (run / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    logged = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert [int(r["step"]) for r in rows] == [r["step"] for r in logged] == [3]
    assert float(rows[0]["loss"]) == logged[0]["loss"] and rows[0]["event"] == "train"
    if "tensorboard" in loggers:
        assert list((run / "tb").glob("events.out.tfevents.*"))
    config = (run / "config.json").read_text()
    assert "logger" not in config and "compile" not in config


def test_an_unknown_logger_is_one_error_line_and_no_run(tmp_path: Path):
    result = invoke("train", "rf", *TINY, "--runs-dir", tmp_path, "--logger", "csv,mlflow")
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: --logger: unknown logger 'mlflow'; use tensorboard, wandb, csv or none"
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["tensorboard", "wandb"])
def test_a_missing_logger_package_names_pip_before_any_run_folder(
    tmp_path: Path, monkeypatch, name: str
):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda mod, *a: None if mod == name else real(mod, *a))  # fmt: skip
    result = invoke("train", "denoiser", "--runs-dir", tmp_path, "--logger", name)
    assert result.exit_code == 2
    pip = f"pip install -e '.[{name}]' (or pip install {name})"
    assert result.output.strip() == f"error: the {name} logger needs the {name} package: {pip}"
    assert not list(tmp_path.iterdir())


@pytest.mark.compile
def test_train_and_sample_compiled_agree_with_eager(data_dir: Path, tmp_path: Path, monkeypatch):
    """--compile trains and samples through torch.compile (the aot_eager backend here: a
    cold inductor build takes minutes on CI's CPUs); the run is an ordinary eager one."""
    import torch

    from diffkit.runs.samples import read_samples

    monkeypatch.setenv("DIFFKIT_COMPILE_BACKEND", "aot_eager")
    run = last_line(invoke("train", "ddpm", *TINY, "--data-dir", data_dir, "--runs-dir",
                           tmp_path, "--compile"))  # fmt: skip
    assert json.loads((run / "summary.json").read_text())["compiled"] is True
    outs = {}
    for flags in ([], ["--compile"]):
        out = tmp_path / f"samples{len(flags)}"
        last_line(invoke("sample", run, "-n", "4", "--steps", "2", "--out", out, *flags))
        outs[len(flags)] = read_samples(out)["samples"]
        compiled = json.loads((out / "sample.json").read_text())["compiled"]
        assert compiled is (True if flags else None)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    result = invoke("sample", run, "--compile", "--cache-interval", "2")
    assert result.exit_code == 2 and "exclude each other" in result.output
