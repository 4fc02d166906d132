"""Pydantic configs (frozen, ``extra="forbid"``) and the machine :class:`Settings`.

The names below load on first use (PEP 562): pydantic's models cost more than the rest
of ``--help`` together.
"""

from __future__ import annotations

from diffkit.lazy import lazy_attributes

_WHERE = {
    "Frozen": "model", "ModelConfig": "model", "UNetConfig": "model",
    "ConfigError": "resolve", "resolve_run_config": "resolve",
    "PRESETS": "run", "DataConfig": "run", "DDPMRunConfig": "run", "DiffusionConfig": "run",
    "TrainConfig": "run", "Settings": "settings",
}  # fmt: skip

__all__ = sorted(_WHERE)

__getattr__ = lazy_attributes(__name__, _WHERE)
