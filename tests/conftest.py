"""Shared fixtures. The datasets come from ``DIFFKIT_TEST_DATA_DIR`` or ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("DIFFKIT_TEST_DATA_DIR", REPO.parent / "shared" / "data"))
    if not (path / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST IDX files not found under {path}")
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's DIFFKIT_* variables or downloads anything."""
    for key in list(os.environ):
        if key.startswith("DIFFKIT_") and key != "DIFFKIT_TEST_DATA_DIR":
            monkeypatch.delenv(key)
    monkeypatch.setenv("DIFFKIT_DOWNLOAD", "false")
    monkeypatch.setenv("DIFFKIT_RUNS_DIR", str(tmp_path / "runs"))
    torch.manual_seed(0)
