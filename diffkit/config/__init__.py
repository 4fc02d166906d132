"""Pydantic configs (frozen, ``extra="forbid"``) and the machine :class:`Settings`.

The names below load on first use (PEP 562): pydantic's models cost more than the rest
of ``--help`` together.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Frozen": "model", "ModelConfig": "model", "UNetConfig": "model",
    "ConfigError": "resolve", "resolve_run_config": "resolve",
    "PRESETS": "run", "DataConfig": "run", "DDPMRunConfig": "run", "DiffusionConfig": "run",
    "TrainConfig": "run", "Settings": "settings",
}  # fmt: skip

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'diffkit.config' has no attribute {name!r}")
    return getattr(importlib.import_module(f"diffkit.config.{_WHERE[name]}"), name)
