"""Exit codes and the translation of expected failures into one-line messages.

Every way a command can fail on bad input ends here as ``error: <one line>`` on stderr and
exit code 2: a usage error found by the parser (:class:`DiffkitGroup`), a value a command
refuses (:func:`handle_errors`), or an output that cannot be written (an ``OSError``).
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import typer
from typer.core import TyperGroup

from diffkit.cli import console, signals
from diffkit.cli.signals import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, exit_code
from diffkit.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DependencyError,
    HardwareError,
    ImageError,
    NothingToDo,
    SolverError,
    UsageError,
)
from diffkit.resources import ResourceError
from diffkit.runs.layout import OutputError, RunLockedError, describe_os_error

EXIT_USAGE = 2  # bad input: config, data, checkpoint, device, an unwritable output
EXIT_FAILED = 1  # the job ran and failed (e.g. a non-finite loss)

USER_ERRORS = (ConfigError, DataError, ImageError, CheckpointError, HardwareError,
               ResourceError, RunLockedError, SolverError, DependencyError)  # fmt: skip

P = ParamSpec("P")
R = TypeVar("R")


def interrupted(exc: BaseException, what: str) -> int:
    """Say why we stop on Ctrl-C or SIGTERM; the exit code that belongs to it."""
    signals.state["reported"] = True
    console.error(f"{'terminated' if isinstance(exc, Terminated) else 'interrupted'}; {what}")
    return exit_code(exc)


def check_finite(params: dict[str, Any]) -> None:
    """Every float a command receives must be a number: ``--eta nan`` would otherwise turn
    every image into NaN with exit 0."""
    for name, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag}: {v} is not a finite number")


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors into ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from pydantic import ValidationError

        from diffkit.config.resolve import format_validation_error

        try:
            check_finite(kwargs)
            return fn(*args, **kwargs)
        except NothingToDo as exc:  # e.g. resuming a finished run: say so, exit 0
            console.info(str(exc))
            raise typer.Exit(0) from None
        except (*USER_ERRORS, UsageError) as exc:
            console.error(str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except ValidationError as exc:
            console.error(format_validation_error(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except OSError as exc:  # unwritable output, full disk, a folder where a file goes
            if isinstance(exc, OutputError):  # already one line naming the path
                console.error(exc.strerror or str(exc))
            else:
                console.error(describe_os_error(exc) if exc.filename else str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt as exc:
            # Outside the training loop's own handler (before it, or a second Ctrl-C):
            # every file is written atomically, so what is on disk is whole.
            raise typer.Exit(interrupted(exc, "files already on disk are intact")) from None

    return wrapper


def _one_line(text: str) -> str:
    """A parser message as one line, without pydantic's "Value error, " prefix."""
    return " ".join(text.replace("Value error, ", "").split())


class DiffkitGroup(TyperGroup):
    """The root command group: parser errors (an unknown option, ``--epochs abc``, a bad
    choice, a missing argument) become one ``error:`` line and exit 2 instead of Typer's
    boxed panel; ``--help`` and ``--version`` are unchanged. Its help lists the commands
    in :data:`~diffkit.cli.help.COMMAND_ORDER`, with every command's help polished
    (:func:`diffkit.cli.help.polish`)."""

    def __init__(self, **attrs: Any) -> None:
        from diffkit.cli.help import polish

        super().__init__(**attrs)
        polish(self)

    def get_params(self, ctx: Any) -> list[Any]:
        from diffkit.cli.help import polish_params

        # Typer appends the completion options after __init__, so they are polished here.
        return polish_params(super().get_params(ctx))

    def list_commands(self, ctx: Any) -> list[str]:
        from diffkit.cli.help import COMMAND_ORDER

        names = list(self.commands)
        return [n for n in COMMAND_ORDER if n in names] + [
            n for n in names if n not in COMMAND_ORDER
        ]

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # click's ClickException family
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is already printed
                sys.exit(EXIT_USAGE)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            message = _one_line(exc.format_message())
            console.error(message[:1].lower() + message[1:] + where)
            sys.exit(EXIT_USAGE if exc.exit_code in (1, 2) else exc.exit_code)
        except typer.Abort:  # click's own Ctrl-C / EOF at a prompt
            console.error("aborted")
            sys.exit(EXIT_INTERRUPTED)
        code = rv if isinstance(rv, int) else 0
        received = signals.state["received"]
        if received and not signals.state["reported"]:  # Typer swallowed it while parsing
            word = "terminated" if received == "SIGTERM" else "interrupted"
            console.error(f"{word} while starting; nothing was written")
            signals.state["starting"] = True
            code = EXIT_TERMINATED if received == "SIGTERM" else EXIT_INTERRUPTED
        if standalone_mode:
            sys.exit(code)
        return code
