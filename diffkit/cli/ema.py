"""``diffkit ema RUN --decay D``: the EMA of another decay, after training, from snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffkit.cli import console
from diffkit.cli.errors import UsageError, handle_errors


@handle_errors
def ema(
    source: Annotated[
        Path,
        typer.Argument(help="Run folder (or a checkpoint in it).", show_default=False),
    ],
    decay: Annotated[
        list[float],
        typer.Option(
            "--decay", help="EMA decay in [0, 1); repeat for several.", show_default=False
        ),
    ],
) -> None:
    """Post-hoc EMA: write checkpoints/ema-DECAY.safetensors for each --decay, the average
    the run would have kept with that decay, rebuilt from the mean weights it saved every
    --snapshot-every-steps N steps (exact for N = 1, close while N is well under the EMA's
    half-life 0.69 / (1 - decay) steps). Sample or evaluate the file like any checkpoint."""
    from diffkit.methods.restore import snapshot_specs
    from diffkit.training.snapshots import posthoc_checkpoint

    for d in decay:
        if not 0 <= d < 1:
            raise UsageError(f"invalid value for '--decay': {d:g} is not in [0, 1)")
    if not source.exists():
        raise UsageError(f"no run at {source}")
    for d in decay:
        try:
            path = posthoc_checkpoint(source, d, snapshot_specs)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        half = 0.69 / (1 - d) if d else 0
        console.info(f"decay {d:g} (half-life {half:.0f} steps)")
        console.out.print(str(path))
