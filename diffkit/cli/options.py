"""Options shared by several commands, declared once as ``Annotated`` types."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from diffkit.config.settings import Settings

ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="TOML, YAML or JSON file with run settings.", show_default=False),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        help="Folder holding <dataset>/ files (env DIFFKIT_DATA_DIR).", show_default=False
    ),
]
RunsDir = Annotated[
    Path | None,
    typer.Option(
        help="Where run folders go (env DIFFKIT_RUNS_DIR; default ./runs).", show_default=False
    ),
]
Device = Annotated[
    Literal["auto", "cpu", "cuda"] | None,
    typer.Option(help="Hardware (env DIFFKIT_DEVICE; default auto).", show_default=False),
]
Seed = Annotated[int | None, typer.Option(help="Random seed.", show_default=False)]


def machine_settings(data_dir: Path | None, runs_dir: Path | None, device: str | None) -> Settings:
    """The machine settings: env ``DIFFKIT_*`` overridden by the flags that were given."""
    from pydantic import ValidationError

    from diffkit.config.resolve import ConfigError, format_validation_error

    overrides = {"data_dir": data_dir, "runs_dir": runs_dir, "device": device}
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
