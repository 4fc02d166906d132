"""Default progress bars for the Python API (tqdm, on stderr, only in a terminal).

The library reports progress through callbacks (``on_step``, ``on_event``) and never prints;
these are the callbacks a caller gets when it passes none and stderr is a terminal, so that
``pipe.sample(...)`` or ``train_generative(...)`` in a shell or notebook is not silent for
minutes. ``progress=False`` turns them off; the CLI passes its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

# ``track(label, total)``: a context that yields ``advance(n=1)`` (or None: nothing to show).
# The CLI passes its rich bar (``console.steps``); the API default is :func:`step_bar`.
Track = Callable[[str, "int | None"], AbstractContextManager["Callable[..., None] | None"]]


def no_track(label: str, total: int | None) -> AbstractContextManager[None]:
    """The :data:`Track` that shows nothing."""
    return nullcontext()


def default_track(progress: bool | None = None, unit: str = "image") -> Track:
    """:func:`step_bar` in ``unit`` when :func:`wanted`, else :func:`no_track`."""
    if not wanted(progress):
        return no_track
    return lambda label, total: step_bar(label, total, True, unit)


def wanted(progress: bool | None) -> bool:
    """``progress`` as given, or (None) whether stderr is a terminal."""
    if progress is not None:
        return progress
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextmanager
def step_bar(
    label: str, total: int | None, enabled: bool = True, unit: str = "step"
) -> Iterator[Callable[..., None] | None]:
    """A tqdm bar over ``total`` steps (None: unknown); yields its ``advance(n=1)``, or
    None when disabled."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=label, unit=unit, leave=False, file=sys.stderr) as bar:
        yield lambda n=1: bar.update(n)


class TrainBar:
    """``on_event`` for training: a bar with loss and img/s, one line per epoch."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, event: Any) -> None:
        from tqdm.auto import tqdm

        match event.kind:
            case "start":
                self.bar = tqdm(total=event.data["total_steps"], initial=event.step,
                                desc="train", unit="step", file=sys.stderr)  # fmt: skip
            case "log" if self.bar is not None:
                self.bar.update(event.step - self.bar.n)
                self.bar.set_postfix(loss=f"{event.data['loss']:.4f}",
                                     img_s=f"{event.data['img_per_sec']:.0f}")  # fmt: skip
            case "epoch" if self.bar is not None:
                loss = event.data.get("loss")
                tail = f", loss {loss:.4f}" if loss is not None else ""
                self.bar.write(
                    f"epoch {event.epoch} done, step {event.step}{tail}", file=sys.stderr
                )
            case "stop" if self.bar is not None:
                self.bar.close()
