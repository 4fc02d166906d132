"""One tiny trained run for the run-folder tests, and a private copy of it per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diffkit.methods.generative import train_generative
from diffkit.runs import RunDir
from tests.runs.util import locked, settings, tiny_cfg


@pytest.fixture(scope="package")
def trained(tmp_path_factory, data_dir: Path) -> RunDir:
    runs = tmp_path_factory.mktemp("runs")
    seen: list[bool] = []
    run, result = train_generative(tiny_cfg(), settings(runs, data_dir),
                                   on_run_dir=lambda r: seen.append(locked(r.path)))  # fmt: skip
    assert seen == [True], "a fresh run is locked as soon as its folder exists"
    assert run is not None and result.reason == "finished" and not locked(run.path)
    return run


@pytest.fixture
def run(trained: RunDir, tmp_path: Path) -> RunDir:
    """A private copy of the trained run, free to tamper with."""
    copy = tmp_path / "ddpm" / trained.path.name
    shutil.copytree(trained.path, copy)
    return RunDir(copy)
