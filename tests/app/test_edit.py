"""The edit ops called from Python: on a tiny class-conditional MNIST run, they write the
folder the CLI writes, report progress to the reporter given and refuse bad requests."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from diffkit.app.edit.compose import anagram
from diffkit.app.edit.images import inpaint, noise
from diffkit.app.edit.requests import AnagramRequest, HybridRequest, InpaintRequest, NoiseRequest
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
    assert meta["views"] == ["identity", "rot180"] and meta["sampler"] == "dpm++2m"
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
    assert result.meta["box"] == "0,0,28,14" and result.meta["sampler"] == "dpm++2m"


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


@pytest.fixture
def photo(tmp_path: Path) -> tuple[Path, torch.Tensor]:
    """A random 10 x 12 RGB PNG and the image it holds, (1, 3, 10, 12) in [-1, 1]."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    x0 = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1
    return tmp_path / "photo.png", x0


@pytest.fixture
def no_model(monkeypatch):
    """Every way a model could be loaded raises."""
    import diffkit.app.edit.images
    import diffkit.app.edit.pipeline
    import diffkit.methods.load
    import diffkit.runs.checkpoint

    def refuse(*args, **kwargs):
        raise AssertionError("edit noise loaded a model")

    for module, name in ((diffkit.app.edit.images, "open_model"),
                         (diffkit.app.edit.pipeline, "open_model"),
                         (diffkit.methods.load, "load_pipeline"),
                         (diffkit.runs.checkpoint, "load_checkpoint")):  # fmt: skip
        monkeypatch.setattr(module, name, refuse)
    try:
        import diffkit.external.diffusers
    except ImportError:  # no [diffusers] extra: nothing to load a diffusers model with
        return
    monkeypatch.setattr(diffkit.external.diffusers, "load_diffusers", refuse)


def _draws(seed: int, k: int, shape) -> list[torch.Tensor]:
    """The noise of each of ``k`` levels: successive draws of one CPU generator."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(k)]


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_noise_from_a_ddpm_schedule_alone(kind, photo, no_model, tmp_path: Path):
    """No model is loaded; each level is sqrt(abar) x0 + sqrt(1 - abar) eps for the
    seed's noise, at timestep round(t T) (T = 1000; t = 1: the last, 999)."""
    from diffkit.schedules.ddpm import cosine_betas, linear_betas

    png, x0 = photo
    req = NoiseRequest(image=str(png), schedule=kind, at="0.25,0.5,1", seed=7,
                       out=tmp_path / "n")  # fmt: skip
    result = noise(req, Settings(runs_dir=tmp_path, device="cpu"))
    betas = (linear_betas if kind == "linear" else cosine_betas)(1000)
    abar = torch.cumprod(1 - betas, 0)
    got = read_samples(result.folder)["samples"]
    assert got.shape == (3, 3, 10, 12)
    for sample, n, eps in zip(got, (250, 500, 999), _draws(7, 3, x0.shape), strict=True):
        want = abar[n].sqrt() * x0.double() + (1 - abar[n]).sqrt() * eps.double()
        torch.testing.assert_close(sample.double(), want[0], rtol=0, atol=1e-6)
    assert result.meta["timesteps"] == [250, 500, 999] and result.meta["schedule"] == kind
    assert _files(result.folder) >= {"grid.png", "000.png", "002.png", "edit.json",
                                     "sample.json", "samples-00000.safetensors"}  # fmt: skip


def test_noise_from_the_flow_interpolation(photo, no_model, tmp_path: Path):
    """--flow: (1 - t) x0 + t eps; t = 0 is the image, t = 1 the noise itself."""
    png, x0 = photo
    out = last_line(invoke("edit", "noise", "--image", png, "--flow", "--at", "0,0.3,1",
                           "--seed", "2", "--out", tmp_path / "f"))  # fmt: skip
    got = read_samples(out)["samples"]
    eps = _draws(2, 3, x0.shape)
    torch.testing.assert_close(got[0], x0[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[1], (0.7 * x0 + 0.3 * eps[1])[0], rtol=0, atol=1e-6)
    assert torch.equal(got[2], eps[2][0])
    meta = json.loads((out / "edit.json").read_text())
    assert meta["process"] == "flow" and meta["timesteps"] is None and meta["model"] is None


def test_noise_defaults_to_the_linear_schedule_at_the_image_size(photo, no_model,
                                                                  tmp_path: Path):  # fmt: skip
    png, _ = photo
    plain = last_line(invoke("edit", "noise", "--image", png, "--out", tmp_path / "a"))
    linear = last_line(invoke("edit", "noise", "--image", png, "--schedule", "linear", "--at",
                              "250,500,750", "--out", tmp_path / "b"))  # fmt: skip
    assert torch.equal(read_samples(plain)["samples"], read_samples(linear)["samples"])
    assert json.loads((plain / "edit.json").read_text())["at"] == [0.25, 0.5, 0.75]
    small = last_line(invoke("edit", "noise", "--image", png, "--size", "8", "--out",
                             tmp_path / "c"))  # fmt: skip
    assert read_samples(small)["samples"].shape == (3, 3, 8, 8)


def test_noise_takes_a_models_schedule(untrained: Path, tmp_path: Path):
    """--model: the run's own schedule and size, the values its pipeline's q(x_t | x_0)
    gives."""
    from PIL import Image

    from diffkit.methods.load import load_pipeline

    Image.new("L", (28, 28), 90).save(tmp_path / "digit.png")
    req = NoiseRequest(image=str(tmp_path / "digit.png"), model=str(untrained),
                       at="0.5,10,999", out=tmp_path / "m")  # fmt: skip
    with pytest.raises(UsageError, match="values above 1 are DDPM timesteps"):
        noise(req, Settings(runs_dir=tmp_path, device="cpu"))
    req = NoiseRequest(image=str(tmp_path / "digit.png"), model=str(untrained),
                       at="10,999", out=tmp_path / "m")  # fmt: skip
    result = noise(req, Settings(runs_dir=tmp_path, device="cpu"))
    pipe = load_pipeline(untrained)
    x0 = load_image(str(tmp_path / "digit.png"), (1, 28, 28), tmp_path)
    eps = _draws(0, 2, x0.shape)
    want = torch.cat([pipe.noised(x0, n, e) for n, e in zip((10, 999), eps, strict=True)])
    got = read_samples(result.folder)["samples"]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)  # abar in float32 there
    assert result.meta["process"] == "ddpm" and result.meta["schedule"] is None


def test_noise_refuses_what_does_not_fit(photo, tmp_path: Path):
    png = str(photo[0])
    cases = [
        ({"model": "RUN", "schedule": "cosine"}, "give --model, --schedule or --flow, not two"),
        ({"model": "RUN", "flow": True}, "not two"),
        ({"schedule": "linear", "flow": True}, "give one"),
        ({"dtype": "fp16"}, "--dtype is the precision of a diffusers --model"),
        ({"model": "RUN", "size": 8}, "--size is for noise without --model"),
        ({"at": "0.5,x"}, "--at 0.5,x: expected comma-separated numbers"),
    ]
    for fields, message in cases:
        with pytest.raises(UsageError, match=re.escape(message)):
            NoiseRequest(image=png, **fields)
    settings = Settings(runs_dir=tmp_path, device="cpu")
    late = [({"at": "1000"}, "timesteps 0..999"), ({"at": "-0.1"}, "[0, 1]"),
            ({"flow": True, "at": "250"}, "a flow's levels are t in [0, 1]")]  # fmt: skip
    for fields, message in late:
        with pytest.raises(UsageError, match=re.escape(message)):
            noise(NoiseRequest(image=png, out=tmp_path / "x", **fields), settings)
    assert not (tmp_path / "x").exists()
