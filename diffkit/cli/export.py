"""``diffkit export RUN --format diffusers OUT``: a run as a diffusers pipeline folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from diffkit.cli import console
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.options import Device, NoEma, machine_settings


@handle_errors
def export(
    source: Annotated[
        Path,
        typer.Argument(
            help="Run folder or .safetensors checkpoint (ddpm, ldm or rf).", show_default=False
        ),
    ],
    out: Annotated[
        Path,
        typer.Argument(
            help="Folder to write (refused if it exists, unless --overwrite).", show_default=False
        ),
    ],
    fmt: Annotated[
        Literal["diffusers"],
        typer.Option(
            "--format",
            help="diffusers: a folder DiffusionPipeline.from_pretrained(OUT, "
            "trust_remote_code=True) loads (needs the diffusers extra).",
        ),
    ] = "diffusers",
    no_ema: NoEma = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace OUT if it is an earlier export."),
    ] = False,
    device: Device = None,
) -> None:
    """Export a run: unet/ (diffkit's network code and weights, EMA by default),
    scheduler/, vae/ for latent models, the DiffkitPipeline, a README.md model card
    (config, metrics) and samples.png (the newest preview grid, or a new one)."""
    from diffkit.external.export import export_run
    from diffkit.runs.layout import check_writable
    from diffkit.training.hardware import resolve_device

    if (out.exists() or out.is_symlink()) and not overwrite:
        raise UsageError(f"{out} already exists; pass --overwrite to replace an earlier "
                         "export")  # fmt: skip
    check_writable(out.parent)
    settings = machine_settings(None, None, device)
    result = export_run(source, out, fmt=fmt, use_ema=not no_ema, overwrite=overwrite,
                        device=resolve_device(settings.device))  # fmt: skip
    grid = "sampled now" if result.grid == "generated" else f"copied from {result.grid}"
    console.info(f"exported the {result.weights} weights of {source} as a diffusers "
                 f"pipeline; samples.png {grid}")  # fmt: skip
    console.out.print(str(result.out))
