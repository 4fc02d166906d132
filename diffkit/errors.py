"""The errors diffkit raises for bad input, in one module that imports nothing heavy.

Each is defined here and re-exported where it is raised (``diffkit.data.registry.DataError``,
...), so the CLI can name them all in its one ``except`` clause without importing torch at
start-up. Every one of them ends a command with one ``error:`` line and exit code 2.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot be read or does not validate; the message is one line."""


class UsageError(ValueError):
    """A request that cannot be carried out as given (a flag out of range, options that
    exclude each other); the message is one line naming the option."""


class NothingToDo(Exception):
    """Not an error: the request is already fulfilled (a resumed run that already ran its
    length). The CLI prints the message and exits 0."""


class DataError(RuntimeError):
    """A dataset that is missing or unreadable; the message says what to do."""


class ImageError(ValueError):
    """An image or mask that cannot be read or does not fit (one line, exit 2)."""


class CheckpointError(RuntimeError):
    """A missing, corrupt or foreign checkpoint."""


class SolverError(ValueError):
    """An adaptive solve that cannot go on (step size underflow, non-finite state)."""


class HardwareError(RuntimeError):
    """A device or precision the machine cannot provide."""


class DependencyError(RuntimeError):
    """An optional package that a requested feature needs is not installed; the message
    names the pip command."""


def describe_exception(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line: its type and the first line of its message (the
    first two when the first only introduces the second, as in "backend='x' raised:")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines[0] = f"{lines[0]} {lines[1]}"
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
