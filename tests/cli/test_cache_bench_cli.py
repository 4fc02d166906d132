"""`diffkit sample --cache-interval` and `diffkit cache-bench`, end to end on tiny runs
(FID scoring is covered in test_eval_cli, next to its classifier)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffkit.runs.samples import read_samples
from tests.cli.util import TINY, invoke, last_line


@pytest.fixture(scope="module")
def ddpm(data_dir: Path, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return last_line(invoke("train", "ddpm", *TINY, "--cond", "class", "--data-dir", data_dir,
                            "--runs-dir", runs))  # fmt: skip


def samples(folder: Path) -> torch.Tensor:
    return read_samples(folder)["samples"]


def test_sample_with_deepcache(ddpm: Path, tmp_path: Path):
    common = ("--steps", "6", "-n", "4", "--class", "all", "--guidance", "2")
    plain = last_line(invoke("sample", ddpm, *common, "--out", tmp_path / "plain"))
    same = last_line(invoke("sample", ddpm, *common, "--cache-interval", "1",
                            "--out", tmp_path / "one"))  # fmt: skip
    assert torch.equal(samples(same), samples(plain))
    cached = last_line(invoke("sample", ddpm, *common, "--cache-interval", "3",
                              "--cache-branch", "2", "--cache-schedule", "quadratic",
                              "--cache-center", "0.5", "--cache-mode", "linear"))  # fmt: skip
    assert cached.name == "dpm++2m-6-w2-cache3-seed0"
    meta = json.loads((cached / "sample.json").read_text())
    assert meta["nfe"] == 6 and meta["full_nfe"] == 2
    assert meta["cache"] == {"interval": 3, "branch": 2, "schedule": "quadratic",
                             "center": 0.5, "features": "linear"}  # fmt: skip
    assert samples(cached).shape == samples(plain).shape
    r = invoke("sample", ddpm, "--cache-interval", "2", "--cache-branch", "99")
    assert r.exit_code == 2 and "between 1 and" in r.output
    r = invoke("sample", ddpm, "--cache-interval", "2", "--cache-schedule", "quadratic",
               "--sampler", "dopri5")  # fmt: skip
    assert r.exit_code == 2 and "fixed number" in r.output
    r = invoke("sample", ddpm, "--cache-interval", "0")
    assert r.exit_code == 2


def test_cache_bench_without_fid(ddpm: Path, tmp_path: Path):
    out = last_line(invoke("cache-bench", ddpm, "--intervals", "1,2,4", "--steps", "8", "-n",
                           "6", "--batch-size", "4", "--no-fid", "--guidance", "1.5",
                           "--out", tmp_path / "bench"))  # fmt: skip
    report = json.loads((out / "cache-bench.json").read_text())
    points = {p["label"]: p for p in report["points"]}
    assert list(points) == ["uncached-8", "N=2", "N=4", "dpm++2m-4", "dpm++2m-2"]
    ref = points["uncached-8"]
    assert ref["mse"] == 0 and ref["speedup"] == 1 and ref["metrics"] is None
    assert points["N=2"]["full_nfe"] == 4 and points["N=4"]["full_nfe"] == 2
    assert points["dpm++2m-2"]["full_nfe"] == points["dpm++2m-2"]["nfe"] == 2
    assert ref["macs"] > points["N=2"]["macs"] > points["N=4"]["macs"] > 0
    assert points["N=4"]["mac_ratio"] > points["N=2"]["mac_ratio"] > 1
    assert points["N=2"]["mse"] > 0 and report["cache"]["branch"] == 1
    for name in ("cache-bench.png", "grid-uncached-8.png", "grid-N2.png", "grid-dpm++2m-4.png"):
        assert (out / name).is_file(), name
    default = last_line(invoke("cache-bench", ddpm, "--intervals", "3", "--steps", "3", "-n",
                               "2", "--no-fid", "--no-baseline", "--sampler", "heun"))  # fmt: skip
    assert default.parent == ddpm / "cache-bench"
    labels = [p["label"] for p in json.loads((default / "cache-bench.json").read_text())["points"]]
    assert labels == ["uncached-3", "N=3"]


def test_cache_bench_refuses_bad_input(ddpm: Path, tmp_path: Path):
    for args, message in (
        (("--intervals", "1,x"), "whole numbers"),
        (("--intervals", "0,2"), "at least 1"),
        (("--sampler", "dopri5", "--no-fid"), "fixed-step"),
        (("--steps", "5000", "--no-fid"), "steps must be between"),
        (("--cache-branch", "9", "--no-fid"), "between 1 and"),
        (("-n", "3"), "at least 10"),
    ):
        r = invoke("cache-bench", ddpm, *args)
        assert r.exit_code == 2 and message in r.output, (args, r.output)
    r = invoke("cache-bench", tmp_path / "nowhere")
    assert r.exit_code == 2 and "no run" in r.output
