"""Latent diffusion glue: a DDPM's view of its autoencoder (a :class:`Codec`).

The latent model's config takes shape, data and the ``latent`` section from the VAE
(:func:`latent_fixed_layer`); the training set is encoded once (:func:`encode_dataset`);
the VAE's weights travel in every checkpoint under ``vae.`` (:func:`codec_tensors`) and
come back from there (:func:`codec_from_checkpoint`, :func:`codec_from_file`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from diffkit.config.run import LatentConfig
from diffkit.data.registry import ImageData
from diffkit.methods.vae import LatentCodec
from diffkit.models.codec import Codec
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
) -> Codec:
    """The autoencoder embedded in a latent model's checkpoint, or the pretrained one its
    config references (loaded from its source, its sha256 checked)."""
    if latent.pretrained is not None:
        if tensors:
            raise CheckpointError("latent model checkpoint holds vae.* weights, but its config "
                                  "references a pretrained autoencoder")  # fmt: skip
        from diffkit.external.vae import codec_of

        return codec_of(latent, device)
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
    if latent.pretrained is not None:  # referenced, not embedded
        if specs:
            raise CheckpointError(f"{source}: vae.* weights beside a pretrained autoencoder")
        return
    if not specs:
        raise CheckpointError(f"{source}: latent model checkpoint holds no vae.* weights")
    check_state(meta_model(latent.vae.model), specs, source, "vae.",
                "the embedded VAE's weights do not match its config")  # fmt: skip


def codec_from_file(latent: LatentConfig, path: Path, device: torch.device) -> Codec:
    """The autoencoder embedded in the latent-model checkpoint ``path``, its header checked
    before any tensor is read."""
    check_embedded_codec(latent, read_checkpoint_header(path).section("vae"), path)
    tensors = load_checkpoint(path, prefixes=("vae",)).section("vae")
    return codec_from_checkpoint(latent, tensors, device)


def codec_tensors(codec: Codec | None) -> dict[str, Tensor]:
    """The autoencoder's weights under ``vae.``, for the latent model's checkpoints (none
    for a pretrained one, which is referenced)."""
    if codec is None or not isinstance(codec, LatentCodec):
        return {}
    _, tensors, _ = codec.to_parts()
    return {f"vae.{k}": v for k, v in tensors.items()}


def encode_dataset(
    codec: Codec, data: ImageData, cache_dir: Path | None = None, on_info=None
) -> ImageData:
    """The training set as scaled latents (posterior means), float32 ``(N, *latent_shape)``.

    Encoded once before training (``encode`` batches on the codec's device and returns
    to the images' one): the loop then slices latents exactly as it slices images. With
    ``cache_dir`` the latents are kept in ``cache_dir/latents/`` under a key of the images'
    and the autoencoder's digests, so the next run on the same data skips the encoder (for
    a pretrained autoencoder at 128 px, minutes of a GPU per epoch-sized pass). A cache
    file that does not match its key is encoded again.
    """
    if cache_dir is None:
        return ImageData(codec.encode(data.images), data.labels, data.class_names)
    file = cache_dir / "latents" / f"{latent_key(codec, data.images)}.safetensors"
    latents = _cached(file, (len(data), *codec.latent_shape))
    if latents is None:
        latents = codec.encode(data.images)
        _write_cache(file, latents)
        if on_info:
            on_info(f"latents of {len(data)} images cached in {file}")
    elif on_info:
        on_info(f"latents of {len(data)} images read from the cache {file}")
    return ImageData(latents.to(data.images.device), data.labels, data.class_names)


def latent_key(codec: Codec, images: Tensor) -> str:
    """sha256 of the images' bytes and shape, the codec's weights and its scaling."""
    h = hashlib.sha256()
    cpu = images.detach().cpu().contiguous()
    h.update(f"{tuple(cpu.shape)}|{cpu.dtype}|{codec.digest}|{codec.shift!r}|{codec.scale!r}"
             .encode())  # fmt: skip
    h.update(memoryview(cpu.numpy()).cast("B"))
    return h.hexdigest()[:32]


def _cached(file: Path, shape: tuple[int, ...]) -> Tensor | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.is_file():
        return None
    try:
        latents = load_file(str(file)).get("latents")
    except (SafetensorError, OSError, ValueError):
        return None
    if latents is None or tuple(latents.shape) != shape or latents.dtype != torch.float32:
        return None
    return latents


def _write_cache(file: Path, latents: Tensor) -> None:
    """Written to a temp file and renamed: a crash never leaves a torn cache entry. A
    cache that cannot be written (read-only, full) costs the next run an encoding only."""
    from safetensors.torch import save_file

    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
        save_file({"latents": latents.detach().cpu().contiguous()}, str(tmp))
        tmp.replace(file)
    except OSError:
        pass


def latent_fixed_layer(codec: Codec, method: str = "ldm") -> dict:
    """The config values a latent model (``method`` ldm or rf) takes from its VAE: method,
    preset, the denoiser's input shape, the dataset (a diffkit VAE's; a pretrained one was
    loaded for the run's data) and the ``latent`` section (see
    ``resolve_run_config(fixed=)``)."""
    shape = codec.latent_shape
    if not isinstance(codec, LatentCodec):
        return {
            "method": method, "preset": "latent-spatial", "latent": codec.latent_section(),
            "model": {"kind": "unet", "in_channels": shape[0], "image_size": shape[1]},
        }  # fmt: skip
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
