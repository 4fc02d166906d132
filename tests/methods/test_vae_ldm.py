"""Latent diffusion on a three-level spatial VAE (mults 1-2-4, unshuffle 2: latents at
1/8 of the image side), end to end on a small RGB folder: the denoiser takes the VAE's
latent shape, and sampling decodes through the embedded VAE."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from diffkit.methods.load import load_pipeline
from tests.cli.util import invoke, last_line

VAE_TOML = """
[data]
image_size = 32
[model]
base_channels = 8
channel_mults = [1, 2, 4]
num_res_blocks = 1
patch_size = 2
latent_channels = 3
"""


def _folder(root: Path) -> Path:
    """32 RGB images of 32 x 32: noise around a colour per image."""
    root.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(32):
        pixels = (torch.rand(32, 32, 3, generator=g) * 64 + 6 * i).to(torch.uint8)
        Image.fromarray(pixels.numpy(), "RGB").save(root / f"{i:02d}.png")
    return root


def test_ldm_on_a_1_2_4_vae_trains_and_samples(tmp_path: Path):
    images = _folder(tmp_path / "images")
    config = tmp_path / "vae.toml"
    config.write_text(VAE_TOML)
    common = ("--batch-size", "16", "--max-steps", "2", "--sample-every", "0")
    vae = last_line(invoke("train", "vae", "--latent", "spatial", "--dataset",
                           f"folder:{images}", "--config", config, *common,
                           "--runs-dir", tmp_path / "runs"))  # fmt: skip
    summary = json.loads((vae / "summary.json").read_text())
    assert summary["latent"]["shape"] == [3, 4, 4]  # 32 / (2 * 2^2)
    ldm = last_line(invoke("train", "ldm", "--vae", vae, *common, "--runs-dir",
                           tmp_path / "runs"))  # fmt: skip
    cfg = json.loads((ldm / "config.json").read_text())
    assert cfg["model"]["kind"] == "unet"
    assert (cfg["model"]["in_channels"], cfg["model"]["image_size"]) == (3, 4)
    assert cfg["latent"]["vae"]["model"]["channel_mults"] == [1, 2, 4]
    pipe = load_pipeline(ldm / "checkpoints" / "last.safetensors")
    out = pipe.sample(2, steps=2).images
    assert out.shape == (2, 3, 32, 32) and out.min() >= -1 and out.max() <= 1
