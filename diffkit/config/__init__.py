"""Pydantic configs (frozen, ``extra="forbid"``) and the machine :class:`Settings`."""

from diffkit.config.model import Frozen, ModelConfig, UNetConfig
from diffkit.config.resolve import ConfigError, resolve_run_config
from diffkit.config.run import (
    PRESETS,
    DataConfig,
    DDPMRunConfig,
    DiffusionConfig,
    TrainConfig,
)
from diffkit.config.settings import Settings

__all__ = [
    "PRESETS",
    "ConfigError",
    "DDPMRunConfig",
    "DataConfig",
    "DiffusionConfig",
    "Frozen",
    "ModelConfig",
    "Settings",
    "TrainConfig",
    "UNetConfig",
    "resolve_run_config",
]
