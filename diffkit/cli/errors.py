"""Exit codes and the translation of expected failures into one-line messages."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from diffkit.cli import console
from diffkit.config.resolve import ConfigError
from diffkit.data.registry import DataError
from diffkit.runs.checkpoint import CheckpointError
from diffkit.training.hardware import HardwareError

EXIT_USAGE = 2  # bad input: config, data, checkpoint, device
EXIT_FAILED = 1  # the job ran and failed (e.g. a non-finite loss)
EXIT_INTERRUPTED = 130

USER_ERRORS = (ConfigError, DataError, CheckpointError, HardwareError)

P = ParamSpec("P")
R = TypeVar("R")


class UsageError(ValueError):
    """Bad input detected by a command itself."""


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected errors into ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (*USER_ERRORS, UsageError) as exc:
            console.error(str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            console.error("aborted (the last checkpoint on disk is intact)")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper
