"""`diffkit sample DIR | hf:ORG/NAME` at the CLI boundary, on a tiny diffusers pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffkit.methods.load import load_pipeline  # noqa: E402
from diffkit.runs.samples import read_samples  # noqa: E402
from tests.cli.util import invoke  # noqa: E402
from tests.external.test_diffusers import save, tiny_unet  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("diffusers") / "ddpm", unet=tiny_unet(size=8))


def test_sample_a_diffusers_folder_as_the_library_does(folder: Path, tmp_path: Path):
    out = tmp_path / "s"
    result = invoke("sample", folder, "--sampler", "dpm++2m", "--steps", "4", "-n", "3",
                    "--seed", "5", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "sample.json").read_text())
    assert meta["data"] is None and meta["ema"] is None  # a foreign model says neither
    assert meta["spacing"] == "leading"  # the scheduler's convention, not diffkit's trailing
    expected = load_pipeline(folder).sample(3, sampler="dpm++2m", steps=4, seed=5).images
    assert torch.equal(read_samples(out)["samples"], expected)


def test_deepcache_from_the_cli(folder: Path, tmp_path: Path):
    result = invoke("sample", folder, "--steps", "6", "-n", "2", "--cache-interval", "2",
                    "--out", tmp_path / "c")  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "c" / "sample.json").read_text())
    assert meta["nfe"] == 6 and meta["full_nfe"] == 3


def test_cache_bench_times_a_diffusers_model(folder: Path, tmp_path: Path):
    result = invoke("cache-bench", folder, "--steps", "4", "-n", "10", "--intervals", "2",
                    "--out", tmp_path / "b")  # fmt: skip
    assert result.exit_code == 2 and "pass --no-fid" in result.output
    result = invoke("cache-bench", folder, "--steps", "4", "-n", "2", "--intervals", "2",
                    "--no-fid", "--out", tmp_path / "b")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b" / "cache-bench.json").read_text())
    assert [p["full_nfe"] for p in report["points"]][:2] == [4, 2]


def test_foreign_refusals_are_one_line(folder: Path, tmp_path: Path, monkeypatch):
    result = invoke("sample", folder, "--cache-interval", "2", "--cache-branch", "5", "-n", "2")
    assert result.exit_code == 2 and "cache branch must be between 1 and 2" in result.output
    result = invoke("sample", folder, "--sampler", "heun", "--variance", "fixed_large")
    assert (
        result.exit_code == 2
        and "heun on a diffusers DDPMPipeline model does not use variance" in result.output
    )
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = invoke("sample", "hf:google/ddpm-cifar10-32", "-n", "1")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "hf:google/ddpm-cifar10-32 is not in the local Hugging Face cache" in result.output
    assert "hf download google/ddpm-cifar10-32" in result.output
