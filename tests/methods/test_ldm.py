"""Latent diffusion: a DDPM on a VAE's latents, with the VAE inside every checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from diffkit.cli.app import app
from diffkit.config.model import UNetConfig
from diffkit.methods.load import load_pipeline
from diffkit.methods.pipeline import load_weights
from diffkit.nn import build_model
from diffkit.runs.checkpoint import CheckpointError, load_checkpoint

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def last_line(result) -> Path:
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=["flat", "spatial"])
def vae(request, data_dir: Path, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return last_line(invoke(
        "train", "vae", "--latent", request.param, "--latent-dim", "8", "--limit-data", "128",
        "--batch-size", "32", "--max-steps", "3", "--data-dir", data_dir, "--runs-dir", runs,
        "--sample-every", "0",
    ))  # fmt: skip


@pytest.fixture(scope="module")
def ldm(vae: Path, data_dir: Path, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return last_line(invoke(
        "train", "ldm", "--vae", vae, "--cond", "class", "--limit-data", "128",
        "--batch-size", "32", "--max-steps", "3", "--data-dir", data_dir, "--runs-dir", runs,
        "--sample-every", "0",
    ))  # fmt: skip


def test_config_takes_shape_and_data_from_the_vae(ldm: Path, vae: Path):
    cfg = json.loads((ldm / "config.json").read_text())
    vae_cfg = json.loads((vae / "config.json").read_text())
    assert cfg["method"] == "ldm" and cfg["latent"]["source"] == str(vae / "vae.safetensors")
    assert cfg["latent"]["vae"] == vae_cfg and cfg["model"]["num_classes"] == 10
    if vae_cfg["model"]["latent"] == "flat":
        assert cfg["model"]["kind"] == "mlp" and cfg["model"]["dim"] == 8
    else:
        assert cfg["model"]["kind"] == "unet" and cfg["model"]["image_size"] == 7


def test_checkpoint_carries_the_vae_and_samples_images(ldm: Path, vae: Path, tmp_path: Path):
    ckpt = load_checkpoint(ldm / "checkpoints" / "last.safetensors", prefixes=("vae",))
    vae_ckpt = load_checkpoint(vae / "vae.safetensors", prefixes=("model",))
    assert ckpt.section("vae").keys() == vae_ckpt.section("model").keys()
    moved = tmp_path / "alone.safetensors"  # the file alone is enough: no VAE folder needed
    moved.write_bytes((ldm / "checkpoints" / "last.safetensors").read_bytes())
    pipe = load_pipeline(moved)
    labels = torch.arange(4)
    a = pipe.sample(4, steps=3, labels=labels, guidance=2.0).images
    assert a.shape == (4, 1, 28, 28) and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, pipe.sample(4, steps=3, labels=labels, guidance=2.0).images)


def test_tampered_vae_weights_are_refused(ldm: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    src = ldm / "checkpoints" / "last.safetensors"
    tensors = load_file(str(src))
    key = next(k for k in tensors if k.startswith("vae.") and tensors[k].is_floating_point())
    tensors[key] = tensors[key] + 1
    from safetensors import safe_open

    with safe_open(str(src), "pt") as f:
        meta = f.metadata()
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(CheckpointError, match="sha256"):
        load_pipeline(bad)


def test_resume_a_latent_run(vae: Path, data_dir: Path, tmp_path: Path):
    run = last_line(invoke(
        "train", "ldm", "--vae", vae, "--limit-data", "128", "--batch-size", "32",
        "--max-steps", "2", "--data-dir", data_dir, "--runs-dir", tmp_path, "--sample-every", "0",
    ))  # fmt: skip
    result = invoke("train", "ddpm", "--resume", run, "--max-steps", "4", "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").train_state[
        "position"]["step"] == 4  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--config", "{cfg}"], "does not match the VAE"),
        (["--cond", "class", "--cond-routes", "cross"], "cond_routes"),
    ],
)
def test_bad_latent_requests_exit_2(vae: Path, data_dir, tmp_path: Path, extra, message):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"model": {"dim": 3, "in_channels": 9}}')
    args = [a.replace("{cfg}", str(cfg)) for a in extra]
    result = invoke("train", "ldm", "--vae", vae, "--max-steps", "1", "--limit-data", "256",
                    "--sample-every", "0", "--data-dir", data_dir, "--runs-dir", tmp_path / "runs",
                    *args)  # fmt: skip
    if message == "cond_routes" and "flat" not in (vae / "config.json").read_text():
        assert result.exit_code == 0, result.output  # a UNet takes any route
        return
    if message == "cond_routes":
        assert "applies to UNets" in result.output
    assert result.exit_code == 2, result.output
    assert message in result.output and not (tmp_path / "runs").exists()


def test_missing_vae_exits_2(tmp_path: Path, data_dir):
    result = invoke("train", "ldm", "--vae", tmp_path, "--data-dir", data_dir)
    assert result.exit_code == 2 and "vae.safetensors" in result.output


def test_legacy_unet_checkpoints_load(tmp_path: Path):
    """diffkit 0.1.0 named the middle blocks mid1 / mid_attn / mid2."""
    net = build_model(UNetConfig(base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                                 attention_levels=(), norm_groups=8, head_channels=16))  # fmt: skip
    legacy = {}
    for k, v in net.state_dict().items():
        for new, old in (
            ("mid.res1.", "mid1."),
            ("mid.attn.", "mid_attn."),
            ("mid.res2.", "mid2."),
        ):
            k = k.replace(new, old) if k.startswith(new) else k
        legacy[k] = v + 1
    fresh = build_model(net.cfg)
    load_weights(fresh, legacy, tmp_path)
    assert torch.equal(fresh.state_dict()["mid.res1.conv1.weight"], legacy["mid1.conv1.weight"])


def test_sampling_a_vae_run_says_what_it_is(vae: Path):
    result = invoke("sample", vae, "-n", "2")
    assert result.exit_code == 2 and "is a vae run, not a generative model" in result.output


def test_embedded_vae_is_checked_before_it_is_built(ldm: Path, tmp_path: Path):
    from diffkit.config.resolve import validate
    from diffkit.config.run import DDPMRunConfig
    from diffkit.methods.latent import codec_from_file
    from diffkit.runs.checkpoint import save_checkpoint

    ckpt = load_checkpoint(ldm / "checkpoints" / "last.safetensors")
    key = next(k for k in ckpt.tensors if k.startswith("vae."))
    ckpt.tensors["vae.renamed"] = ckpt.tensors.pop(key)
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, ckpt)
    with pytest.raises(CheckpointError, match=f"embedded VAE.*{key} is missing"):
        load_pipeline(bad)
    latent = validate(DDPMRunConfig, ckpt.config).latent
    with pytest.raises(CheckpointError, match="embedded VAE"):
        codec_from_file(latent, bad, torch.device("cpu"))
    assert codec_from_file(latent, ldm / "checkpoints" / "last.safetensors", torch.device("cpu"))
