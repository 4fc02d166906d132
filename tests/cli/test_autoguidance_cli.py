"""``sample|eval --guide-model``: autoguidance at the CLI boundary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffkit.runs.samples import read_samples
from tests.cli.util import TINY, invoke, last_line, runner


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ag")
    common = ("--data-dir", data_dir, "--runs-dir", root / "runs")
    ddpm = last_line(invoke("train", "ddpm", *TINY, *common, "--name", "main"))
    weak = last_line(invoke("train", "ddpm", *TINY, *common, "--max-steps", "1", "--name",
                            "weak"))  # fmt: skip
    v = last_line(invoke("train", "ddpm", *TINY, *common, "--prediction", "v", "--name", "v"))
    rf = last_line(invoke("train", "rf", *TINY, *common, "--name", "rf"))
    return {"ddpm": ddpm, "weak": weak, "v": v, "rf": rf, "root": root}


def test_a_model_guided_by_itself_samples_as_it_does_alone(runs, tmp_path: Path):
    run = runs["ddpm"]
    plain = last_line(invoke("sample", run, "-n", "3", "--steps", "3", "--out", tmp_path / "a"))
    guided = last_line(invoke("sample", run, "-n", "3", "--steps", "3", "--guide-model", run,
                              "--guidance", "2.5", "--out", tmp_path / "b"))  # fmt: skip
    assert (read_samples(plain)["samples"] == read_samples(guided)["samples"]).all()
    meta = json.loads((guided / "sample.json").read_text())
    assert meta["guide_model"] == str(run) and meta["guidance"] == 2.5
    # a weaker guide (the same recipe, trained one step) changes the images
    other = last_line(invoke("sample", run, "-n", "3", "--steps", "3", "--guide-model",
                             runs["weak"] / "checkpoints" / "last.safetensors", "--guidance",
                             "2", "--out", tmp_path / "c"))  # fmt: skip
    assert not (read_samples(other)["samples"] == read_samples(plain)["samples"]).all()
    default = last_line(invoke("sample", run, "-n", "2", "--steps", "2", "--guide-model", run,
                               "--guidance", "2"))  # fmt: skip
    assert default.name == "dpm++2m-2-ag2-seed0"


@pytest.mark.parametrize(("guide", "expected"), [
    ("rf", "the guide is a flow, this model a DDPM"),
    ("v", "the guide predicts v"),
    ("nowhere", "guide model"),
])  # fmt: skip
def test_an_incompatible_guide_exits_2_in_one_line(runs, guide: str, expected: str):
    path = runs.get(guide, runs["root"] / guide)
    r = runner.invoke(app_cli(), ["sample", str(runs["ddpm"]), "-n", "2", "--steps", "2",
                                  "--guide-model", str(path), "--guidance", "2"])  # fmt: skip
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]


def app_cli():
    from diffkit.cli.app import app

    return app
