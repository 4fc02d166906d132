"""Build a network from its config: the one place that maps ``kind`` to a class."""

from __future__ import annotations

from torch import nn

from diffkit.config.model import ModelConfig


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
