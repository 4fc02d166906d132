"""`diffkit export RUN --format diffusers OUT` at the CLI boundary, on a tiny run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffkit.config import DDPMRunConfig  # noqa: E402
from diffkit.runs.checkpoint import Checkpoint, save_checkpoint  # noqa: E402
from tests.cli.util import invoke, last_line  # noqa: E402
from tests.external.test_export import COND, make_run  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "cond", DDPMRunConfig, COND)


def error_line(result) -> str:
    """The one stderr line of a refused command (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_export_writes_a_folder_diffusers_loads(run: Path, tmp_path: Path, monkeypatch):
    from diffusers.utils import dynamic_modules_utils

    monkeypatch.setattr(dynamic_modules_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    out = last_line(invoke("export", run, "--format", "diffusers", tmp_path / "out", "--no-ema"))
    assert out == tmp_path / "out"
    pipe = diffusers.DiffusionPipeline.from_pretrained(out, trust_remote_code=True)
    assert pipe.unet.config.num_classes == 3 and pipe.unet.config.diffkit["weights"] == "model"
    pipe.set_progress_bar_config(disable=True)
    images = pipe(class_labels=[0, 1], num_inference_steps=3, output_type="pt").images
    assert images.shape == (2, 1, 28, 28) and torch.isfinite(images).all()


def test_refusals_are_one_line(run: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    assert "--overwrite" in error_line(invoke("export", run, out))
    line = error_line(invoke("export", run, out, "--format", "onnx"))
    assert "--format" in line and "diffusers" in line
    vae = tmp_path / "vae"
    save_checkpoint(vae / "checkpoints" / "last.safetensors",
                    Checkpoint({"method": "vae"}, {"model.w": torch.zeros(1)}))  # fmt: skip
    assert "exporting vae runs is not supported" in error_line(
        invoke("export", vae, tmp_path / "a")
    )
    monkeypatch.setitem(sys.modules, "diffusers", None)
    assert "pip install 'diffkit[diffusers]'" in error_line(invoke("export", run, tmp_path / "b"))
