"""EDM preconditioning and log-normal noise levels through `train ddpm`, then sampling on a
Karras grid and the export refusal, at the CLI boundary on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.util import TINY, invoke, last_line


@pytest.fixture(scope="module")
def edm_run(tmp_path_factory, data_dir: Path) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return last_line(invoke("train", "ddpm", *TINY, "--prediction", "edm", "--noise-levels",
                            "log_normal", "--data-dir", data_dir, "--runs-dir", runs))  # fmt: skip


def test_the_run_records_the_recipe(edm_run: Path):
    diffusion = json.loads((edm_run / "config.json").read_text())["diffusion"]
    assert diffusion["prediction"] == "edm" and diffusion["noise_levels"] == "log_normal"
    assert (diffusion["log_sigma_mean"], diffusion["log_sigma_std"]) == (-1.2, 1.2)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++2m", "heun"])
def test_every_sampler_runs_on_a_karras_grid(edm_run: Path, tmp_path: Path, sampler: str):
    out = last_line(invoke("sample", edm_run, "-n", "4", "--sampler", sampler, "--steps", "4",
                           "--spacing", "karras", "--out", tmp_path / "s"))  # fmt: skip
    meta = json.loads((out / "sample.json").read_text())
    assert meta["spacing"] == "karras"


def test_export_refuses_edm_in_one_line(edm_run: Path, tmp_path: Path):
    pytest.importorskip("diffusers")
    result = invoke("export", edm_run, tmp_path / "out")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "EDM preconditioning" in lines[0], result.stderr
