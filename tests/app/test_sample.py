"""diffkit.app.sample from Python: the folder `diffkit sample` writes, without Typer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffkit.app.common import CacheRequest
from diffkit.app.sample import SampleRequest, Sampling, sample
from diffkit.config.settings import Settings
from diffkit.errors import UsageError
from diffkit.runs.samples import read_samples
from tests.cli.util import TINY, invoke, last_line


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir: Path) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return last_line(invoke("train", "ddpm", *TINY, "--cond", "class", "--data-dir", data_dir,
                            "--runs-dir", runs))  # fmt: skip


def test_the_folder_matches_the_cli(run: Path, tmp_path: Path):
    request = SampleRequest(run, Sampling("dpm++2m", 3), n=5, classes=("3",), guidance=2.0,
                            seed=4, batch_size=2, out=tmp_path / "py")  # fmt: skip
    out = sample(request, Settings(device="cpu"))
    assert out.folder == tmp_path / "py" and out.meta["sampler"] == "dpm++2m"
    assert out.summary.startswith("5 images, dpm++2m 3 steps: ")
    cli = last_line(invoke("sample", run, "-n", "5", "--sampler", "dpm++2m", "--steps", "3",
                           "--class", "3", "--guidance", "2", "--seed", "4", "--batch-size",
                           "2", "--out", tmp_path / "cli", "--device", "cpu"))  # fmt: skip
    ours, theirs = read_samples(out.folder), read_samples(cli)
    assert torch.equal(ours["samples"], theirs["samples"])
    meta = json.loads((cli / "sample.json").read_text())
    volatile = {"wall_seconds", "ms_per_image"}
    assert {k: v for k, v in out.meta.items() if k not in volatile} == {
        k: v for k, v in meta.items() if k not in volatile}  # fmt: skip


def test_the_default_folder_is_named_by_the_request(run: Path):
    request = SampleRequest(run, Sampling("ddim", 2, eta=0.5), n=2, guidance=1.5,
                            cache=CacheRequest(interval=1))  # fmt: skip
    out = sample(request, Settings(device="cpu"))
    assert out.folder.parent == run / "samples" and out.folder.name == "ddim-2-eta0.5-w1.5-seed0"


def test_a_request_the_model_cannot_take_is_a_usage_error(run: Path, tmp_path: Path):
    with pytest.raises(UsageError, match="--sampler/--steps: steps must be between 1 and"):
        sample(SampleRequest(run, Sampling("ddim", 10**6), out=tmp_path / "x"), Settings())
    with pytest.raises(UsageError, match="ddim on a ddpm model does not use rtol"):
        sample(SampleRequest(run, Sampling("ddim", 2, rtol=0.1), out=tmp_path / "x"), Settings())
    assert not (tmp_path / "x").exists()
