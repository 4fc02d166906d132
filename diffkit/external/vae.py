"""A pretrained diffusers ``AutoencoderKL`` as a latent codec (``--vae hf:ORG/NAME | DIR``).

:class:`PretrainedCodec` is a :class:`~diffkit.models.codec.Codec`, as diffkit's own
:class:`~diffkit.methods.vae.LatentCodec` is: ``encode`` to scaled latents ``(z - shift) *
scale``, ``decode`` back, ``latent_shape``, ``image_shape``, ``digest``. ``scale`` and
``shift`` are the autoencoder's own ``scaling_factor`` and ``shift_factor`` (0 when it has
none): the numbers its diffusion models were trained with, so a latent made here is the
latent a Stable Diffusion UNet would see.

The weights are referenced, not embedded in checkpoints: a run records the source, the
autoencoder's config and the sha256 of its tensors, and every load checks that digest.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from diffkit.config.run import LatentConfig, PretrainedVAEConfig
from diffkit.errors import CheckpointError, ConfigError
from diffkit.models.codec import NetCodec

BATCH = 64  # images per forward pass: an SD VAE at 256 px holds ~1 GB of activations each


@dataclass
class PretrainedCodec(NetCodec):
    """A frozen ``AutoencoderKL`` (eval mode, on one device) and its latent scaling.
    ``encode`` and ``decode`` (:class:`NetCodec`) run ``BATCH`` images a slice."""

    BATCH = BATCH
    KIND = "autoencoder"
    net: nn.Module  # diffusers.AutoencoderKL
    shift: float
    scale: float
    source: str  # "hf:ORG/NAME" or the folder, as given
    digest: str
    image_size: int
    image_channels: int  # the data's: 1 is repeated to RGB and decoded as the channel mean
    config = None  # no diffkit VAE config (see LatentCodec.config)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return latent_shape(self.net.config, self.image_size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.image_channels, self.image_size, self.image_size)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # (b, 1, H, W) -> (b, 3, H, W)
        posterior = self.net.encode(x.to(self.dtype)).latent_dist
        return posterior.mean, posterior.std

    def decode_slice(self, z: Tensor) -> Tensor:
        x = self.net.decode(z.to(self.dtype)).sample.float()  # (b, 3, H, W)
        if self.image_channels == 1:
            x = x.mean(1, keepdim=True)  # (b, 3, H, W) -> (b, 1, H, W)
        return x

    def latent_section(self) -> dict[str, Any]:
        """The ``latent`` config section of a model trained on these latents."""
        pretrained = PretrainedVAEConfig(
            config=json_config(self.net.config), latent_shape=self.latent_shape,
            image_size=self.image_size, image_channels=self.image_channels,
        )  # fmt: skip
        return {"source": self.source, "sha256": self.digest, "shift": self.shift,
                "scale": self.scale, "pretrained": pretrained.model_dump(mode="json")}  # fmt: skip


def is_autoencoder_folder(path: Path) -> bool:
    """A saved ``AutoencoderKL`` (its config.json names the class), or a pipeline folder
    whose ``vae/`` is one."""
    return _autoencoder_dir(path) is not None


def _autoencoder_dir(path: Path) -> Path | None:
    for folder in (path, path / "vae"):
        try:
            cfg = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(cfg, dict) and cfg.get("_class_name") == "AutoencoderKL":
            return folder
    return None


def json_config(config: Any) -> dict[str, Any]:
    """The autoencoder's config as plain JSON (diffusers' FrozenDict holds tuples)."""
    return json.loads(json.dumps(dict(config), default=list))


def latent_shape(config: Any, image_size: int) -> tuple[int, int, int]:
    """(latent channels, H / f, W / f) with f = 2^(levels - 1), the encoder's downsampling."""
    factor = 2 ** (len(config["block_out_channels"]) - 1)
    return (int(config["latent_channels"]), image_size // factor, image_size // factor)


def load_pretrained_codec(
    source: str | Path,
    image_size: int,
    image_channels: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> PretrainedCodec:
    """The ``AutoencoderKL`` at ``source`` (a folder, a pipeline folder with ``vae/``, or
    ``hf:ORG/NAME`` from the local Hugging Face cache) for images of ``image_size`` pixels
    and ``image_channels`` channels. Everything that does not fit is one-line ConfigError."""
    from diffkit.external.diffusers import _import, resolve

    folder = _autoencoder_dir(resolve(source))
    if folder is None:
        raise ConfigError(f"{source} holds no diffusers AutoencoderKL (config.json with "
                          "_class_name AutoencoderKL, itself or in vae/)")  # fmt: skip
    diffusers = _import("diffusers")
    # Without accelerate diffusers warns and loads plainly; ask for that directly.
    plain = importlib.util.find_spec("accelerate") is None
    kwargs = {"torch_dtype": dtype, "local_files_only": True,
              **({"low_cpu_mem_usage": False} if plain else {})}  # fmt: skip
    try:
        net = diffusers.AutoencoderKL.from_pretrained(str(folder), **kwargs)
    except Exception as exc:  # diffusers raises OSError, ValueError, EnvironmentError ...
        raise CheckpointError(f"cannot load the AutoencoderKL at {folder}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from None  # fmt: skip
    cfg = net.config
    factor = 2 ** (len(cfg["block_out_channels"]) - 1)
    if image_size % factor:
        raise ConfigError(f"{source} downsamples by {factor}: the image size must be a "
                          f"multiple of it, not {image_size}")  # fmt: skip
    if cfg["in_channels"] != 3 or cfg["out_channels"] != 3:
        raise ConfigError(f"{source} takes {cfg['in_channels']}-channel images; diffkit "
                          "reads RGB autoencoders")  # fmt: skip
    shift = float(cfg.get("shift_factor") or 0.0)
    scale = float(cfg.get("scaling_factor") or 1.0)
    net = net.to(device).eval().requires_grad_(False)
    return PretrainedCodec(net, shift, scale, str(source), weights_digest(net), image_size,
                           image_channels)  # fmt: skip


def weights_digest(net: nn.Module) -> str:
    """sha256 over the state dict's names, dtypes, shapes and bytes (as diffkit's own)."""
    from diffkit.eval.features import tensor_digest

    return tensor_digest({k: v.detach().cpu() for k, v in net.state_dict().items()})


def codec_of(latent: LatentConfig, device: torch.device | str = "cpu") -> PretrainedCodec:
    """The pretrained codec a latent model's config references, its digest checked."""
    p = latent.pretrained
    assert p is not None
    try:
        codec = load_pretrained_codec(latent.source, p.image_size, p.image_channels, device)
    except (ConfigError, CheckpointError) as exc:
        raise CheckpointError(f"the model's autoencoder {latent.source}: {exc}") from None
    if codec.digest != latent.sha256:
        raise CheckpointError(f"the autoencoder at {latent.source} changed since the model was "
                              "trained (its weights' sha256 differs)")  # fmt: skip
    if codec.latent_shape != tuple(p.latent_shape):
        raise CheckpointError(
            f"the autoencoder at {latent.source} now makes latents of shape "
            f"{codec.latent_shape}, not {tuple(p.latent_shape)}"
        )
    return codec
