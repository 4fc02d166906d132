"""``diffkit data prepare DATASET``: decode a dataset once into memory-mappable arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffkit.cli import console
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.options import DataDir, machine_settings

app = typer.Typer(help="Prepare datasets.", no_args_is_help=True)


@app.command("prepare")
@handle_errors
def prepare(
    dataset: Annotated[
        str,
        typer.Argument(help="mnist | fashion-mnist | cifar10 | folder:PATH.", show_default=False),
    ],
    size: Annotated[
        int | None,
        typer.Option(
            help="Image side for folder: datasets (default 32).", min=4, show_default=False
        ),
    ] = None,
    channels: Annotated[
        int | None,
        typer.Option(
            help="1 (gray) or 3 (RGB) for folder: datasets (default 3).", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder to write (refused if it exists; default: DATA_DIR/prepared/NAME-SIZE).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Decode DATASET once into raw uint8 arrays (+ labels, a manifest with sha256s) that
    training reads as --dataset prepared:OUT: in memory when it fits, else memory-mapped
    with worker processes and pinned memory. Prints the folder."""
    from diffkit.config.resolve import validate
    from diffkit.config.run import DataConfig
    from diffkit.data.prepare import prepare as prepare_dataset
    from diffkit.data.prepared import with_manifest_shape
    from diffkit.data.registry import image_shape

    if channels not in (None, 1, 3):
        raise UsageError("--channels must be 1 or 3")
    is_folder = dataset.startswith("folder:")
    if not is_folder and (size is not None or channels is not None):
        raise UsageError(f"{dataset} has a fixed image size; --size and --channels are for "
                         "folder: datasets")  # fmt: skip
    settings = machine_settings(data_dir, None, None)
    fields = {"dataset": dataset} | ({"image_size": size} if size else {})
    fields |= {"channels": channels} if channels else {}
    cfg = validate(DataConfig, with_manifest_shape(fields))
    c, side = image_shape(cfg)
    if out is None:
        name = Path(dataset.removeprefix("folder:")).name if is_folder else dataset
        out = settings.data_dir / "prepared" / f"{name}-{side}px{'-gray' if c == 1 else ''}"
    console.info(f"preparing {dataset} ({c}x{side}x{side}) into {out}")
    with console.steps("images", None) as advance:
        manifest = prepare_dataset(cfg, settings.data_dir, out, on_image=advance)
    for split, entry in manifest["splits"].items():
        skipped = f", {entry['skipped']} unreadable files skipped" if entry["skipped"] else ""
        console.info(f"{split}: {entry['count']} images{skipped}")
    console.info(f"train with --dataset prepared:{out}")
    console.out.print(str(out))
