"""The edit ops called from Python: on a tiny class-conditional MNIST run, they write the
folder the CLI writes, report progress to the reporter given and refuse bad requests."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from diffkit.app.edit.compose import anagram
from diffkit.app.edit.images import inpaint
from diffkit.app.edit.requests import AnagramRequest, HybridRequest, InpaintRequest
from diffkit.config.settings import Settings
from diffkit.edit.images import load_image
from diffkit.errors import UsageError
from diffkit.runs.samples import read_samples
from tests.cli.util import TINY, invoke, last_line


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir: Path) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return last_line(invoke("train", "ddpm", *TINY, "--cond", "class", "--data-dir", data_dir,
                            "--runs-dir", runs))  # fmt: skip


class Recorder:
    """A reporter that keeps the labels of the progress bars it was asked for."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def features(self, about) -> None:
        pass

    @contextmanager
    def steps(self, label: str, total: int | None):
        self.labels.append(label)
        yield lambda n=1: None


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_anagram_writes_the_folder_the_cli_writes(run: Path, tmp_path: Path, data_dir: Path):
    req = AnagramRequest(model=str(run), prompts=("6", "9"), views="identity,rot180", n=2,
                         steps=3, seed=5, out=tmp_path / "app")  # fmt: skip
    report = Recorder()
    result = anagram(req, Settings(data_dir=data_dir, runs_dir=tmp_path, device="cpu"), report)
    assert result.folder == tmp_path / "app"
    assert _files(result.folder) == {"edit.json", "sample.json", "samples-00000.safetensors",
                                     "grid.png", "000.png", "001.png"}  # fmt: skip
    meta = json.loads((result.folder / "edit.json").read_text())
    assert meta == result.meta
    assert meta["views"] == ["identity", "rot180"] and meta["sampler"] == "ddim"
    assert report.labels == ["anagram, 2 images"]
    cli = last_line(invoke("edit", "anagram", "--model", run, "6", "9", "--views",
                           "identity,rot180", "-n", "2", "--steps", "3", "--seed", "5",
                           "--out", tmp_path / "cli", "--device", "cpu"))  # fmt: skip
    assert json.loads((cli / "edit.json").read_text()) == meta
    ours, theirs = (read_samples(f)["samples"] for f in (result.folder, cli))
    assert torch.equal(ours, theirs)


def test_inpaint_keeps_the_image_outside_the_box(run: Path, tmp_path: Path, data_dir: Path):
    req = InpaintRequest(model=str(run), image="mnist:test:0", box="0,0,28,14", n=2, steps=3,
                         out=tmp_path / "i")  # fmt: skip
    result = inpaint(req, Settings(data_dir=data_dir, runs_dir=tmp_path, device="cpu"))
    samples = read_samples(result.folder)["samples"]  # (2, 1, 28, 28)
    original = load_image("mnist:test:0", (1, 28, 28), data_dir)
    assert samples.shape == (2, 1, 28, 28)
    assert torch.allclose(samples[:, :, 14:], original[:, :, 14:].expand(2, -1, -1, -1))
    assert result.meta["box"] == "0,0,28,14" and result.meta["sampler"] == "ddim"


def test_requests_refuse_what_needs_no_model():
    with pytest.raises(UsageError, match="exactly one of --mask and --box"):
        InpaintRequest(image="mnist:test:0")
    with pytest.raises(UsageError, match="--kernel must be odd"):
        HybridRequest(low="1", high="8", kernel=4)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    """A tiny unconditional MNIST DDPM run, freshly initialised from its config (nothing
    trains)."""
    from diffkit.config.resolve import resolve_run_config
    from diffkit.config.run import DDPMRunConfig
    from diffkit.nn.build import build_model
    from diffkit.runs.checkpoint import Checkpoint, save_checkpoint

    cfg = resolve_run_config(DDPMRunConfig, {"preset": "tiny"}, environ={})
    run = tmp_path_factory.mktemp("runs") / "ddpm" / "20240101-000000-tiny"
    (run / "checkpoints").mkdir(parents=True)
    config = cfg.model_dump(mode="json")
    (run / "config.json").write_text(json.dumps(config))
    weights = build_model(cfg.model).state_dict()
    tensors = {f"{p}.{k}": v.clone() for p in ("model", "ema") for k, v in weights.items()}
    save_checkpoint(run / "checkpoints" / "last.safetensors", Checkpoint(config, tensors))
    return run


def test_an_edit_folder_is_read_as_a_sample_folder(untrained: Path, tmp_path: Path):
    """`diffkit eval` reads an edit's output as it reads `diffkit sample`'s: the same
    shards, the dataset from sample.json, the images as stored."""
    from PIL import Image

    from diffkit.app.sources import Source
    from diffkit.data.loader import to_uint8
    from diffkit.eval.evaluate import sample_files
    from diffkit.runs.samples import sample_shards

    Image.new("L", (28, 28), 200).save(tmp_path / "digit.png")
    sampled = last_line(invoke("sample", untrained, "-n", "10", "--sampler", "ddim", "--steps",
                               "2", "--out", tmp_path / "sampled", "--device", "cpu"))  # fmt: skip
    edited = last_line(invoke("edit", "sdedit", "--model", untrained, "--image",
                              tmp_path / "digit.png", "--start", "0,1,2,0,1,2,0,1,2,0",
                              "--steps", "3", "--out", tmp_path / "edited",
                              "--device", "cpu"))  # fmt: skip
    for folder in (sampled, edited):
        assert sample_files(folder) == sample_shards(folder) == [
            folder / "samples-00000.safetensors"]  # fmt: skip
        assert not list(folder.parent.glob(f".{folder.name}*"))  # no unfinished folder left
        source = Source.open(folder, None, 100, "cpu", True)
        assert source.data.dataset == "mnist" and source.folder == folder
        assert torch.equal(source.images, to_uint8(read_samples(folder)["samples"]))
    assert source.images.shape == (10, 1, 28, 28) and source.labels is None
    meta = json.loads((edited / "sample.json").read_text())
    assert meta["source"] == str(untrained.resolve()) and meta["op"] == "sdedit"
    assert meta["files"] == ["samples-00000.safetensors"]
