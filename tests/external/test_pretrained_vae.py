"""A pretrained diffusers AutoencoderKL as a latent codec: built tiny and random in the test,
checked against diffusers' own encode/decode, its latents cached, and a latent DDPM trained,
sampled and refused when the autoencoder changes or moves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

pytest.importorskip("diffusers")

from diffkit.data.registry import ImageData
from diffkit.errors import ConfigError
from diffkit.external.vae import load_pretrained_codec
from diffkit.methods.latent import encode_dataset
from tests.cli.util import invoke, last_line

SCALE, SHIFT = 0.5, 0.1


def tiny_autoencoder(folder: Path, seed: int = 0) -> Path:
    """An AutoencoderKL with two levels (downsampling 2), 4 latent channels, saved with
    ``save_pretrained`` as a hub download would be laid out."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=28,
        scaling_factor=SCALE, shift_factor=SHIFT,
    )  # fmt: skip
    vae.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def ae(tmp_path_factory) -> Path:
    return tiny_autoencoder(tmp_path_factory.mktemp("ae") / "vae")


def test_codec_equals_diffusers_own_encode_and_decode(ae: Path):
    codec = load_pretrained_codec(str(ae), 28, 3)
    vae = codec.net
    x = torch.rand(3, 3, 28, 28) * 2 - 1
    with torch.no_grad():
        want = (vae.encode(x).latent_dist.mean - SHIFT) * SCALE
        z = codec.encode(x)
        torch.testing.assert_close(z, want)
        assert z.shape == (3, *codec.latent_shape) == (3, 4, 14, 14)
        torch.testing.assert_close(codec.decode(z), vae.decode(z / SCALE + SHIFT).sample)
    assert (codec.scale, codec.shift) == (SCALE, SHIFT)


def test_gray_images_are_repeated_to_rgb_and_decoded_as_their_mean(ae: Path):
    gray, rgb = load_pretrained_codec(str(ae), 28, 1), load_pretrained_codec(str(ae), 28, 3)
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    z = gray.encode(x)
    torch.testing.assert_close(z, rgb.encode(x.expand(-1, 3, -1, -1)))
    torch.testing.assert_close(gray.decode(z), rgb.decode(z).mean(1, keepdim=True))
    assert gray.image_shape == (1, 28, 28)


def test_unfit_sizes_and_folders_are_one_line_errors(ae: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match=r"downsamples by 2: .* not 27"):
        load_pretrained_codec(str(ae), 27, 3)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ConfigError, match="holds no diffusers AutoencoderKL"):
        load_pretrained_codec(str(tmp_path), 28, 3)
    with pytest.raises(ConfigError, match="do not fit the autoencoder"):
        load_pretrained_codec(str(ae), 28, 3).encode(torch.zeros(1, 3, 16, 16))


def test_latents_are_encoded_once_and_cached(ae: Path, tmp_path: Path, monkeypatch):
    codec = load_pretrained_codec(str(ae), 28, 3)
    data = ImageData(torch.randint(0, 256, (5, 3, 28, 28), dtype=torch.uint8), None)
    first = encode_dataset(codec, data, tmp_path)
    (file,) = (tmp_path / "latents").glob("*.safetensors")
    torch.testing.assert_close(first.images, codec.encode(data.images))

    def no_encoder(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(type(codec), "encode", no_encoder)
    torch.testing.assert_close(encode_dataset(codec, data, tmp_path).images, first.images)
    monkeypatch.undo()
    file.write_bytes(b"torn")  # a damaged entry is encoded again and rewritten
    torch.testing.assert_close(encode_dataset(codec, data, tmp_path).images, first.images)
    other = ImageData(data.images.flip(0), None)  # other images, another key
    encode_dataset(codec, other, tmp_path)
    assert len(list((tmp_path / "latents").glob("*.safetensors"))) == 2


def test_train_sample_and_refuse_a_changed_autoencoder(tmp_path: Path, data_dir: Path):
    ae = tiny_autoencoder(tmp_path / "vae")
    runs = tmp_path / "runs"
    common = ("--data-dir", data_dir, "--runs-dir", runs)
    missing = invoke("train", "ldm", "--vae", ae, "--max-steps", "2", *common)
    assert missing.exit_code == 2 and "name the data with --dataset" in missing.output
    run = last_line(invoke("train", "ldm", "--vae", ae, "--dataset", "mnist", "--limit-data",
                           "32", "--batch-size", "16", "--max-steps", "2", "--sample-every",
                           "0", *common))  # fmt: skip
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["latent"]["source"] == str(ae.resolve()) and cfg["preset"] == "latent-spatial"
    assert cfg["latent"]["pretrained"]["latent_shape"] == [4, 14, 14]
    assert (cfg["latent"]["scale"], cfg["latent"]["shift"]) == (SCALE, SHIFT)
    with safe_open(str(run / "checkpoints" / "last.safetensors"), framework="pt") as f:
        assert not [k for k in f.keys() if k.startswith("vae.")]  # noqa: SIM118 (not embedded)
    out = last_line(invoke("sample", run, "-n", "2", "--steps", "2", "--sampler", "ddim",
                           "--out", tmp_path / "s"))  # fmt: skip
    with safe_open(str(out / "samples-00000.safetensors"), framework="pt") as f:
        assert f.get_tensor("samples").shape == (2, 1, 28, 28)
    tiny_autoencoder(ae, seed=1)  # other weights in the same folder
    changed = invoke("sample", run, "-n", "2", "--steps", "2", "--out", tmp_path / "s2")
    assert changed.exit_code == 2 and "changed since the model was trained" in changed.output
    shutil.rmtree(ae)
    gone = invoke("sample", run, "-n", "2", "--steps", "2", "--out", tmp_path / "s3")
    assert gone.exit_code == 2 and str(ae.resolve()) in gone.output
    assert "Traceback" not in changed.output + gone.output
