"""Latent diffusion glue: a DDPM's view of its VAE (:class:`LatentCodec`).

The latent model's config takes shape, data and the ``latent`` section from the VAE
(:func:`latent_fixed_layer`); the training set is encoded once (:func:`encode_dataset`);
the VAE's weights travel in every checkpoint under ``vae.`` (:func:`codec_tensors`) and
come back from there (:func:`codec_from_checkpoint`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffkit.config.run import LatentConfig
from diffkit.data.registry import ImageData
from diffkit.methods.vae import LatentCodec
from diffkit.runs.checkpoint import CheckpointError


def codec_from_checkpoint(
    latent: LatentConfig, tensors: dict[str, Tensor], device: torch.device
) -> LatentCodec:
    """The autoencoder embedded in a latent model's checkpoint."""
    if not tensors:
        raise CheckpointError("latent model checkpoint holds no vae.* weights")
    stats = {"shift": latent.shift, "scale": latent.scale, "sha256": latent.sha256}
    return LatentCodec.from_parts(latent.vae.model_dump(mode="json"), tensors, stats, device)


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
