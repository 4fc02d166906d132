"""SIGTERM as an exception. Imports nothing heavy: the entry point installs it before torch."""

from __future__ import annotations

import contextlib
import signal
from typing import Any

EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C): 128 + 2
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``except KeyboardInterrupt`` that saves
    work on the way out also runs for it; only the exit code differs."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


def install_sigterm() -> None:
    """From now on SIGTERM unwinds the stack like Ctrl-C (see :class:`Terminated`)."""
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, _raise_terminated)


def exit_code(exc: BaseException) -> int:
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
