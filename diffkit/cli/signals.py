"""SIGTERM as an exception. Imports nothing heavy: the entry point installs it before torch."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any, NoReturn

EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``except KeyboardInterrupt`` that saves
    work on the way out also runs for it; only the exit code differs."""


state = {"received": None, "reported": False, "starting": False}
"""The signal our handlers saw (``"SIGINT"``/``"SIGTERM"``), whether a message about it
was printed, and whether it came before any command ran: Typer turns a Ctrl-C during
option parsing into a silent exit 130, which the root group then reports
(:class:`diffkit.cli.errors.DiffkitGroup`)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    state["received"] = "SIGTERM"
    raise Terminated


def _raise_interrupt(signum: int, frame: Any) -> None:
    state["received"] = "SIGINT"
    raise KeyboardInterrupt


def install_sigterm() -> None:
    """From now on SIGTERM unwinds the stack like Ctrl-C (see :class:`Terminated`); both
    are recorded in :data:`state`."""
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, _raise_terminated)
        signal.signal(signal.SIGINT, _raise_interrupt)


def exit_code(exc: BaseException) -> int:
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def exit_while_starting(code: int) -> NoReturn:
    """Leave with ``code`` after a signal that came before any command ran (nothing is
    open or written yet, so there is nothing to clean up).

    ``sys.exit`` is not enough here: Typer builds the app by ``eval``-ing string
    annotations, and CPython marks a KeyboardInterrupt raised inside ``eval`` of a string
    as unhandled even when it is caught, so at exit the interpreter kills itself with
    SIGINT and the caller sees "killed by signal 2" instead of exit code 130."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
