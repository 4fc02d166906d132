"""Options shared by several commands, declared once as ``Annotated`` types."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

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
