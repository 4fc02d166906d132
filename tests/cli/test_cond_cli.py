"""Class-conditional training, guided sampling and class grids through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffkit.cli.app import app
from diffkit.runs.samples import read_samples

runner = CliRunner()
TINY = ["--preset", "tiny", "--limit-data", "64", "--batch-size", "16", "--max-steps", "3"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def cond_run(data_dir: Path, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    result = invoke(
        "train", "ddpm", *TINY, "--cond", "class", "--cond-routes", "time,input,cross",
        "--mid-block", "transformer", "--transformer-heads", "2",
        "--data-dir", data_dir, "--runs-dir", runs, "--sample-every", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def test_conditional_run_config(cond_run: Path):
    cfg = json.loads((cond_run / "config.json").read_text())
    m = cfg["model"]
    assert m["num_classes"] == 10 and m["cond_routes"] == ["time", "input", "cross"]
    assert m["mid_block"] == "transformer" and cfg["train"]["cond_drop"] == 0.1


def test_grid_per_class_stores_labels(cond_run: Path, tmp_path: Path):
    out = tmp_path / "grid"
    result = invoke("sample", cond_run, "--grid-per-class", "-n", "3", "--guidance", "2",
                    "--steps", "2", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    tensors = read_samples(out)
    assert tensors["samples"].shape == (30, 1, 28, 28)
    assert tensors["labels"].tolist() == [c for c in range(10) for _ in range(3)]
    meta = json.loads((out / "sample.json").read_text())
    assert meta["guidance"] == 2 and meta["classes"] == list(range(10))
    # grid.png: one column per class as in training previews, 3 rows, names above
    from PIL import Image

    width, height = Image.open(out / "grid.png").size
    assert width == 10 * (28 + 2) * 2 + 4  # 10 columns at scale 2, no row-label margin
    assert height > 3 * (28 + 2) * 2 + 4  # 3 rows and the strip of class names


def test_class_by_name_and_list(cond_run: Path, tmp_path: Path):
    out = tmp_path / "some"
    result = invoke("sample", cond_run, "--class", "3,7", "--class", "0..1", "-n", "5",
                    "--steps", "2", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_samples(out)["labels"].tolist() == [3, 7, 0, 1, 3]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--class", "eleven"], "not a class of mnist"),
        (["--class", "5..12"], "need 0 <= first <= last < 10"),
        (["--class", "3", "--guidance", "-1"], "'--guidance': -1.0 is not a finite number >= 0"),
    ],
)
def test_bad_class_requests_exit_2(cond_run: Path, extra, message):
    result = invoke("sample", cond_run, "--steps", "2", *extra)
    assert result.exit_code == 2 and message in result.output


def test_unconditional_models_refuse_classes(data_dir: Path, tmp_path: Path):
    result = invoke("train", "ddpm", *TINY, "--data-dir", data_dir, "--runs-dir", tmp_path,
                    "--sample-every", "0")  # fmt: skip
    run = Path(result.stdout.strip().splitlines()[-1])
    result = invoke("sample", run, "--class", "3", "--steps", "2")
    assert result.exit_code == 2 and "unconditional" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cond-routes", "time,bogus", "--cond", "class"], "unknown bogus"),
        (["--cond-routes", "cross"], "needs --cond class"),
        (["--cond", "class", "--cond-drop", "1.5"], "invalid train.cond_drop"),
        (["--mid-block", "transformer", "--transformer-heads", "5"], "transformer_heads"),
        (["--cond", "class", "--dataset", "folder:/nonexistent"], "image folder not found"),
    ],
)
def test_bad_conditioning_flags_exit_2(data_dir: Path, tmp_path: Path, extra, message):
    result = invoke("train", "ddpm", *TINY, "--data-dir", data_dir, "--runs-dir", tmp_path,
                    *extra)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ddpm").exists()  # nothing written
