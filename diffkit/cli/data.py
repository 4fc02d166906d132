"""``diffkit data prepare DATASET``: decode a dataset once into memory-mappable arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from diffkit.cli import console
from diffkit.cli.errors import handle_errors
from diffkit.cli.flags import DATA_DIR, OUTPUT, argument, option, takes
from diffkit.cli.options import settings_of
from diffkit.cli.shared import picked

app = typer.Typer(help="Prepare datasets.", no_args_is_help=True)

PREPARE = (
    argument("dataset", str, "mnist | fashion-mnist | cifar10 | folder:PATH."),
    option("size", int | None, "Image side for folder: datasets (default 32).", None, min=4),
    option("channels", int | None, "1 (gray) or 3 (RGB) for folder: datasets (default 3).", None),
    option("out", Path | None, "Folder to write (refused if it exists; default: "
           "DATA_DIR/prepared/NAME-SIZE).", OUTPUT),
    DATA_DIR,
)  # fmt: skip


@app.command("prepare")
@handle_errors
@takes(PREPARE)
def prepare(**o: Any) -> None:
    """Decode DATASET once into raw uint8 arrays (+ labels, a manifest with sha256s) that
    training reads as --dataset prepared:OUT: in memory when it fits, else memory-mapped
    with worker processes and pinned memory. Prints the folder."""
    from diffkit.app.prepare import PrepareRequest
    from diffkit.app.prepare import prepare as prepare_dataset

    request = picked(PrepareRequest, o)
    result = prepare_dataset(request, settings_of(o), console)
    console.info(f"train with --dataset prepared:{result.folder}")
    console.out.print(str(result.folder))
