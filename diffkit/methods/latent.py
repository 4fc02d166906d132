"""Latent diffusion glue: a DDPM's view of its VAE (:class:`LatentCodec`).

The latent model's config takes shape, data and the ``latent`` section from the VAE
(:func:`latent_fixed_layer`); the training set is encoded once (:func:`encode_dataset`);
the VAE's weights travel in every checkpoint under ``vae.`` (:func:`codec_tensors`) and
come back from there (:func:`codec_from_checkpoint`, :func:`codec_from_file`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from diffkit.config.run import LatentConfig
from diffkit.data.registry import ImageData
from diffkit.methods.vae import LatentCodec
from diffkit.nn.build import meta_model
from diffkit.runs.checkpoint import (
    CheckpointError,
    TensorSpec,
    check_state,
    load_checkpoint,
    read_checkpoint_header,
)


def codec_from_checkpoint(
    latent: LatentConfig, tensors: dict[str, Tensor], device: torch.device
) -> LatentCodec:
    """The autoencoder embedded in a latent model's checkpoint."""
    if not tensors:
        raise CheckpointError("latent model checkpoint holds no vae.* weights")
    stats = {"shift": latent.shift, "scale": latent.scale, "sha256": latent.sha256}
    return LatentCodec.from_parts(latent.vae.model_dump(mode="json"), tensors, stats, device)


def check_embedded_codec(
    latent: LatentConfig, specs: Mapping[str, TensorSpec], source: object
) -> None:
    """Before loading a latent model's ``vae.*`` tensors (``specs``, from its header): they
    must be exactly those of the VAE its config describes, which must fit in memory; the
    config alone could claim a VAE of any size."""
    if not specs:
        raise CheckpointError(f"{source}: latent model checkpoint holds no vae.* weights")
    check_state(meta_model(latent.vae.model), specs, source, "vae.",
                "the embedded VAE's weights do not match its config")  # fmt: skip


def codec_from_file(latent: LatentConfig, path: Path, device: torch.device) -> LatentCodec:
    """The autoencoder embedded in the latent-model checkpoint ``path``, its header checked
    before any tensor is read."""
    check_embedded_codec(latent, read_checkpoint_header(path).section("vae"), path)
    tensors = load_checkpoint(path, prefixes=("vae",)).section("vae")
    return codec_from_checkpoint(latent, tensors, device)


def codec_tensors(codec: LatentCodec | None) -> dict[str, Tensor]:
    """The autoencoder's weights under ``vae.``, for the latent model's checkpoints."""
    if codec is None:
        return {}
    _, tensors, _ = codec.to_parts()
    return {f"vae.{k}": v for k, v in tensors.items()}


def encode_dataset(codec: LatentCodec, data: ImageData) -> ImageData:
    """The training set as scaled latents (posterior means), float32 (N, *latent_shape).

    Encoded once before training (``encode`` batches on the codec's device and returns
    to the images' one): the loop then slices latents exactly as it slices images.
    """
    return ImageData(codec.encode(data.images), data.labels, data.class_names)


def latent_fixed_layer(codec: LatentCodec, method: str = "ldm") -> dict:
    """The config values a latent model (``method`` ldm or rf) takes from its VAE: method,
    preset, the denoiser's input shape, the dataset and the ``latent`` section (see
    ``resolve_run_config(fixed=)``)."""
    shape = codec.latent_shape
    model = (
        {"kind": "mlp", "dim": shape[0]}
        if len(shape) == 1
        else {"kind": "unet", "in_channels": shape[0], "image_size": shape[1]}
    )
    vae = codec.config
    data = vae.data.model_dump(mode="json", include={"dataset", "image_size", "channels"})
    return {
        "method": method,
        "preset": f"latent-{vae.model.latent}",
        "model": model,
        "data": data,
        "latent": {
            "source": codec.source, "sha256": codec.digest, "shift": codec.shift,
            "scale": codec.scale, "vae": vae.model_dump(mode="json"),
        },
    }  # fmt: skip
