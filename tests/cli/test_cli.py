"""The CLI at its boundary: Typer's CliRunner, plus real processes where signals matter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from diffkit.cli.app import app
from diffkit.runs.samples import read_samples

runner = CliRunner()
TINY = ["--preset", "tiny", "--limit-data", "64", "--batch-size", "16", "--epochs", "1"]


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir: Path) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("DIFFKIT_DOWNLOAD", "false")
    try:
        result = invoke(
            "train",
            "ddpm",
            *TINY,
            "--data-dir",
            str(data_dir),
            "--runs-dir",
            str(runs),
            "--name",
            "cli",
            "--seed",
            "3",
        )
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == runs / "ddpm" and path.name.endswith("-cli")
    return path


def test_train_writes_a_complete_run_folder(trained_run: Path):
    names = {p.relative_to(trained_run).as_posix() for p in trained_run.rglob("*")}
    for expected in (
        "config.json",
        "metrics.jsonl",
        "checkpoints/last.safetensors",
        "checkpoints/epoch-0001.safetensors",
        "samples/epoch-0001.png",
        "loss.png",
        "summary.json",
    ):
        assert expected in names
    cfg = json.loads((trained_run / "config.json").read_text())
    assert cfg["preset"] == "tiny" and cfg["train"]["seed"] == 3 and cfg["data"]["limit"] == 64
    record = json.loads((trained_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"step", "epoch", "loss", "lr", "img_per_sec", "elapsed"} <= record.keys()
    assert json.loads((trained_run / "summary.json").read_text())["reason"] == "finished"


def test_sample_writes_outputs_and_is_seeded(trained_run: Path, tmp_path: Path):
    outs = []
    for name in ("a", "b"):
        r = invoke(
            "sample",
            str(trained_run),
            "--sampler",
            "ddim",
            "--steps",
            "5",
            "-n",
            "6",
            "--seed",
            "7",
            "--out",
            str(tmp_path / name),
        )
        assert r.exit_code == 0, r.output
        outs.append(read_samples(tmp_path / name)["samples"])
    assert outs[0].shape == (6, 1, 28, 28) and outs[0].dtype == torch.float32
    assert torch.equal(outs[0], outs[1])
    assert outs[0].min() >= -1 and outs[0].max() <= 1
    meta = json.loads((tmp_path / "a" / "sample.json").read_text())
    assert meta["steps"] == 5 and meta["seed"] == 7 and meta["ms_per_image"] > 0
    assert (tmp_path / "a" / "grid.png").is_file()


def test_sample_ddpm_from_checkpoint_file(trained_run: Path, tmp_path: Path):
    ckpt = trained_run / "checkpoints" / "last.safetensors"
    r = invoke(
        "sample",
        str(ckpt),
        "--sampler",
        "ddpm",
        "--steps",
        "8",
        "-n",
        "2",
        "--out",
        str(tmp_path / "d"),
    )
    assert r.exit_code == 0, r.output
    assert "ms/image" in r.stderr


def test_python_api_matches_cli(trained_run: Path, tmp_path: Path):
    import diffkit

    r = invoke("sample", str(trained_run), "--steps", "4", "-n", "3", "--seed", "11",
               "--out", str(tmp_path / "cli"))  # fmt: skip
    assert r.exit_code == 0, r.output
    from_cli = read_samples(tmp_path / "cli")["samples"]
    x = diffkit.load(trained_run).sample(3, steps=4, seed=11).images  # the same default sampler
    assert x.shape == (3, 1, 28, 28) and torch.equal(x, from_cli)


def test_default_sample_folders_are_never_overwritten(trained_run: Path):
    outs = []
    for _ in range(2):
        r = invoke("sample", str(trained_run), "--steps", "2", "-n", "1", "--seed", "5")
        assert r.exit_code == 0, r.output
        outs.append(Path(r.stdout.strip().splitlines()[-1]))
    assert outs[0] != outs[1]
    assert outs[0].parent == trained_run / "samples" and outs[0].name == "dpm++2m-2-seed5"
    assert all((o / "grid.png").is_file() for o in outs)


def test_runs_lists_the_run(trained_run: Path):
    r = invoke("runs", "--runs-dir", str(trained_run.parents[1]))
    assert r.exit_code == 0 and "ddpm" in r.stdout and "cli" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "ddpm", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["train", "ddpm", "--epochs", "-3"], "invalid train.epochs"),
        (
            ["train", "ddpm", "--device", "cuda"]
            if not torch.cuda.is_available()
            else ["train", "ddpm", "--epochs", "0"],
            "cuda" if not torch.cuda.is_available() else "epochs",
        ),
        (["train", "ddpm", "--precision", "fp16", "--device", "cpu", "--max-steps", "1"], "fp16"),
        (["train", "ddpm", "--config", "missing.toml"], "config file not found"),
        (["sample", "no/such/run"], "no run or checkpoint at no/such/run"),
        (["train", "ddpm", "--resume", "no/such/run"], "cannot resume"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, data_dir: Path, tmp_path: Path):
    r = runner.invoke(app, [*args, "--data-dir", str(data_dir)] if args[0] == "train" else args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr
    assert "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_data_exits_2(tmp_path: Path):
    r = runner.invoke(app, ["train", "ddpm", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "put train-images-idx3-ubyte.gz" in r.stderr


def test_corrupt_checkpoint_and_bad_steps(trained_run: Path, tmp_path: Path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    r = runner.invoke(app, ["sample", str(bad)])
    assert r.exit_code == 2 and "cannot read checkpoint" in r.stderr
    r = runner.invoke(app, ["sample", str(trained_run), "--steps", "5000"])
    assert r.exit_code == 2 and "steps must be between 1 and 1000" in r.stderr


def test_resume_refuses_changed_hyperparameters(trained_run: Path):
    r = runner.invoke(app, ["train", "ddpm", "--resume", str(trained_run), "--lr", "0.1"])
    assert r.exit_code == 2 and "cannot change train.lr" in r.stderr


def test_resume_extends_a_finished_run(trained_run: Path, data_dir: Path, tmp_path: Path):
    import shutil

    copy = tmp_path / "ddpm" / trained_run.name
    shutil.copytree(trained_run, copy)
    r = invoke("train", "ddpm", "--resume", str(copy), "--epochs", "2", "--data-dir", str(data_dir))
    assert r.exit_code == 0, r.output
    assert json.loads((copy / "summary.json").read_text())["epochs"] == 2
    assert (copy / "checkpoints" / "epoch-0002.safetensors").is_file()
