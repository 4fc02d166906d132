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


def test_a_guidance_interval_limits_autoguidance_to_its_band(runs, tmp_path: Path):
    run, weak = runs["ddpm"], runs["weak"] / "checkpoints" / "last.safetensors"
    common = ("-n", "3", "--steps", "3", "--guide-model", weak, "--guidance", "2")

    def samples(name: str, *extra):
        out = last_line(invoke("sample", run, *common, *extra, "--out", tmp_path / name))
        return read_samples(out)["samples"], json.loads((out / "sample.json").read_text())

    guided, _ = samples("all")
    wide, meta = samples("wide", "--guidance-interval", "0:1e9")
    assert meta["guidance_interval"] == [0, 1e9] and (wide == guided).all()
    plain = read_samples(last_line(invoke("sample", run, "-n", "3", "--steps", "3", "--out",
                                          tmp_path / "plain")))["samples"]  # fmt: skip
    none, _ = samples("none", "--guidance-interval", "1e8:1e9")  # no step is that noisy
    assert (none == plain).all()
    band, _ = samples("band", "--guidance-interval", "0.5:5")
    assert not (band == guided).all() and not (band == plain).all()
    default = last_line(invoke("sample", run, *common, "--guidance-interval", "0.5:5"))
    assert default.name == "dpm++2m-3-ag2-i0.5-5-seed0"


@pytest.mark.parametrize(("extra", "expected"), [
    (("--guidance-interval", "5:1"), "0 <= LO < HI"),
    (("--guidance-interval", "a:b"), "LO:HI"),
    (("--guidance", "1", "--guidance-interval", "0:5"), "give --guidance W"),
])  # fmt: skip
def test_a_bad_guidance_interval_exits_2_in_one_line(runs, extra, expected):
    r = runner.invoke(app_cli(), ["sample", str(runs["ddpm"]), "-n", "2", "--steps", "2",
                                  "--guide-model", str(runs["weak"]), "--guidance", "2",
                                  *extra])  # fmt: skip
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
