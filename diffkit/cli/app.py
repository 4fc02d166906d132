"""The root Typer app: ``diffkit train|sample|eval|reflow|edit|export|cache-bench|denoise-bench|
data|runs``."""

from __future__ import annotations

from typing import Annotated

import typer

from diffkit import __version__
from diffkit.cli import cache_bench, data, denoise_bench, distill, edit, reflow, runs, sample, train
from diffkit.cli import ema as ema_cmd
from diffkit.cli import eval as eval_cmd
from diffkit.cli import export as export_cmd
from diffkit.cli.errors import DiffkitGroup

app = typer.Typer(
    name="diffkit",
    cls=DiffkitGroup,
    help="Train, sample, straighten, accelerate and inspect diffusion and rectified-flow models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
app.add_typer(train.app, name="train")
app.add_typer(reflow.app, name="reflow")
app.command("distill")(distill.distill)
app.add_typer(edit.app, name="edit")
app.command("sample")(sample.sample)
app.command("runs")(runs.runs)
app.command("eval")(eval_cmd.evaluate)
app.command("export")(export_cmd.export)
app.command("ema")(ema_cmd.ema)
app.command("cache-bench")(cache_bench.cache_bench)
app.command("denoise-bench")(denoise_bench.denoise_bench)
app.add_typer(data.app, name="data")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"diffkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """diffkit: diffusion and rectified-flow models from the command line."""


def main() -> None:
    app()


if __name__ == "__main__":  # python -m diffkit.cli.app (torchrun -m ...): SIGTERM as in entry
    from diffkit.cli.signals import install_sigterm

    install_sigterm()
    main()
