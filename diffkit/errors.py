"""The errors diffkit raises for bad input, in one module that imports nothing heavy.

Each is defined here and re-exported where it is raised (``diffkit.data.registry.DataError``,
...), so the CLI can name them all in its one ``except`` clause without importing torch at
start-up. Every one of them ends a command with one ``error:`` line and exit code 2.
"""

from __future__ import annotations


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
