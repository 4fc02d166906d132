"""train_vae on an MNIST slice; LatentCodec: round trips, latent scaling, bad files."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from diffkit.config.resolve import ConfigError, resolve_run_config
from diffkit.config.run import VAERunConfig
from diffkit.config.settings import Settings
from diffkit.data.loader import to_unit_range
from diffkit.data.registry import load_dataset
from diffkit.methods.vae import VAE_FILE, LatentCodec, load_codec, train_vae
from diffkit.runs.checkpoint import CheckpointError
from diffkit.runs.metrics import read_metrics

TINY = {
    "data.limit": 256,
    "train.batch_size": 32,
    "train.epochs": 1,
    "train.preview_n": 16,
    "model.latent_dim": 16,
    "name": "tiny",
}


def settings(runs: Path, data_dir: Path) -> Settings:
    return Settings(runs_dir=runs, data_dir=data_dir, download=False, device="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir: Path):
    cfg = resolve_run_config(VAERunConfig, TINY, environ={})
    return train_vae(cfg, settings(tmp_path_factory.mktemp("vae-runs"), data_dir))


def test_run_folder_and_summary(trained):
    run = trained.run.path
    for name in ("vae.safetensors", "recon.png", "samples/recon-epoch-0001.png", "loss.png",
                 "config.json", "checkpoints/last.safetensors"):  # fmt: skip
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["reason"] == "finished" and summary["steps"] == 8
    assert summary["recon_mse"] == trained.recon_mse and 0 < trained.recon_mse < 2
    assert trained.kl >= 0 and trained.scale > 0
    assert summary["latent"] == {"shift": trained.shift, "scale": trained.scale, "shape": [16]}


def test_codec_round_trips(trained):
    a = load_codec(trained.run.path)
    b = load_codec(trained.run.path / VAE_FILE)
    c = LatentCodec.from_parts(*a.to_parts(), device="cpu")
    assert a.digest == b.digest == c.digest == trained.digest
    assert (a.shift, a.scale) == (trained.shift, trained.scale)
    assert not a.net.training and a.latent_shape == (16,)
    z = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    images = a.decode(z)
    assert images.shape == (5, 1, 28, 28) and images.abs().max() <= 1
    assert torch.equal(images, b.decode(z)) and torch.equal(images, c.decode(z))
    x = images.clone()
    assert torch.equal(a.encode(x), c.encode(x))
    # decode un-scales exactly what encode scaled
    mu = a.net.encode(x)[0]
    assert torch.allclose(a.encode(x), (mu - a.shift) * a.scale)
    assert torch.allclose(a.decode(a.encode(x)), a.net.decode(mu), atol=1e-5)


def test_latents_have_zero_mean_and_unit_variance(trained, data_dir: Path):
    codec = load_codec(trained.run.path)
    data = load_dataset(codec.config.data, data_dir, "train", download=False)  # the stats slice
    z = codec.encode(to_unit_range(data.images), batch_size=100)
    assert z.shape == (256, 16)
    assert abs(z.mean().item()) < 1e-4 and z.std().item() == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(codec.encode(data.images[:10]), z[:10], atol=1e-5)  # uint8 is fine
    s1 = codec.encode(data.images[:10], sample=True, generator=torch.Generator().manual_seed(3))
    s2 = codec.encode(data.images[:10], sample=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2) and not torch.equal(s1, z[:10])
    with pytest.raises(ConfigError, match="do not fit"):
        codec.decode(torch.zeros(2, 8))


def test_bad_files_raise_checkpoint_errors(trained, tmp_path: Path):
    with pytest.raises(CheckpointError, match=r"has no vae\.safetensors"):
        load_codec(tmp_path)
    with pytest.raises(CheckpointError, match="no VAE run"):
        load_codec(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_codec(bad)
    with pytest.raises(CheckpointError, match="not a trained VAE"):
        load_codec(trained.run.path / "checkpoints" / "last.safetensors")
    config, tensors, latent = load_codec(trained.run.path).to_parts()
    tensors["fc_mu.bias"] = tensors["fc_mu.bias"] + 1
    with pytest.raises(CheckpointError, match="sha256"):
        LatentCodec.from_parts(config, tensors, latent)
    with pytest.raises(CheckpointError, match="shift/scale"):
        LatentCodec.from_parts(config, tensors, {})


def test_interrupted_run_writes_no_vae(tmp_path: Path, data_dir: Path):
    flags = TINY | {"data.limit": 64, "train.batch_size": 16, "train.epochs": 3,
                    "train.log_every": 1, "train.sample_every": 0}  # fmt: skip
    cfg = resolve_run_config(VAERunConfig, flags, environ={})
    sent = []

    def interrupt(event) -> None:
        if event.kind == "log" and event.step >= 2 and not sent:
            sent.append(event.step)
            os.kill(os.getpid(), signal.SIGINT)

    res = train_vae(cfg, settings(tmp_path, data_dir), on_event=interrupt)
    assert res.train.reason == "interrupted" and res.train.step < 12
    assert res.recon_mse is None and res.digest is None
    assert not (res.run.path / VAE_FILE).exists()
    assert (res.run.path / "checkpoints" / "last.safetensors").is_file()
    with pytest.raises(CheckpointError, match="interrupted"):
        load_codec(res.run.path)

    # --resume finishes it exactly as an uninterrupted run: the same vae.safetensors
    resumed = train_vae(cfg, settings(tmp_path, data_dir), resume=res.run)
    assert resumed.run == res.run and resumed.train.step == 12
    whole = train_vae(cfg, settings(tmp_path / "whole", data_dir))
    assert resumed.digest == whole.digest is not None
    assert (resumed.shift, resumed.scale) == (whole.shift, whole.scale)
    steps = [r["step"] for r in read_metrics(res.run.metrics) if "loss" in r]
    assert steps == list(range(1, 13))
