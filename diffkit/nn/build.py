"""Build a network from its config: the one place that maps ``kind`` to a class."""

from __future__ import annotations

import torch
from torch import nn

from diffkit.config.model import ModelConfig
from diffkit.resources import check_memory

TRAIN_BYTES_PER_PARAM = 20
"""fp32 training: weights, gradients and AdamW's two moments (16 bytes), plus the EMA copy."""


def build_model(cfg: ModelConfig) -> nn.Module:
    match cfg.kind:
        case "unet":
            from diffkit.nn.unet import UNet

            return UNet(cfg)
        case "classifier":
            from diffkit.nn.classifier import FeatureClassifier

            return FeatureClassifier(cfg)
        case "mlp":
            from diffkit.nn.mlp import MLPDenoiser

            return MLPDenoiser(cfg)
        case "vae":
            from diffkit.nn.vae import build_vae

            return build_vae(cfg)
    raise ValueError(f"unknown model kind {cfg.kind!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(cfg: ModelConfig) -> nn.Module:
    """The network with shapes but no storage (meta device): free to build at any size, so
    a config or checkpoint can be checked before its memory is asked for."""
    with torch.device("meta"):
        return build_model(cfg)


def estimate_parameters(cfg: ModelConfig) -> int:
    """Parameters the network of ``cfg`` would have, counted without allocating it."""
    return count_parameters(meta_model(cfg))


def check_trainable(cfg: ModelConfig, device: torch.device) -> int:
    """Refuse (ResourceError, naming the estimate) a model whose training state cannot fit:
    in host memory, where it is built, and on a GPU, where it trains. Its parameters."""
    n = estimate_parameters(cfg)
    what = f"training the {cfg.kind} model with {n:,} parameters"
    on_gpu = device.type == "cuda"
    check_memory(n * (4 if on_gpu else TRAIN_BYTES_PER_PARAM), what)  # built on the host first
    if on_gpu:
        free, _total = torch.cuda.mem_get_info(device)
        check_memory(n * TRAIN_BYTES_PER_PARAM, f"{what} on {device}", available=free)
    return n
