"""A small feature classifier trained once per session on an MNIST slice."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffkit.config.resolve import resolve_run_config
from diffkit.config.run import ClassifierRunConfig
from diffkit.config.settings import Settings

# ~6 s on 2 CPU cores; reaches ~95 % test accuracy, enough for metric behaviour tests.
QUICK = {"data.limit": 4000, "train.epochs": 2, "model.widths": (16, 32), "name": "quick"}


@pytest.fixture(scope="session")
def quick_classifier(tmp_path_factory, data_dir: Path):
    from diffkit.methods.classifier import train_classifier

    runs = tmp_path_factory.mktemp("clf-runs")
    cfg = resolve_run_config(ClassifierRunConfig, QUICK, environ={})
    settings = Settings(runs_dir=runs, data_dir=data_dir, download=False, device="cpu")
    return train_classifier(cfg, settings)
