"""Where the application layer reports to: progress, notes and warnings, never prints.

The CLI's console module satisfies :class:`Reporter`; :data:`QUIET` drops everything, for
library use; a notebook can pass its own (tqdm bars, a logger).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Reporter(Protocol):
    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def features(self, about: dict[str, Any]) -> None:
        """The feature network that scores are computed with (an extractor's ``about()``)."""
        ...

    def steps(self, label: str, total: int | None):
        """A context manager yielding ``advance(n=1)``, over ``total`` steps (None: unknown)."""
        ...


class _Quiet:
    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def features(self, about: dict[str, Any]) -> None:
        pass

    @contextmanager
    def steps(self, label: str, total: int | None) -> Iterator[Callable[..., None]]:
        yield lambda n=1: None


QUIET: Reporter = _Quiet()
"""A reporter that says nothing."""
