"""Default progress bars for the Python API (tqdm, on stderr, only in a terminal).

The library reports progress through callbacks (``on_step``, ``on_event``) and never prints;
these are the callbacks a caller gets when it passes none and stderr is a terminal, so that
``pipe.sample(...)`` or ``train_generative(...)`` in a shell or notebook is not silent for
minutes. ``progress=False`` turns them off; the CLI passes its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def wanted(progress: bool | None) -> bool:
    """``progress`` as given, or (None) whether stderr is a terminal."""
    if progress is not None:
        return progress
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@contextmanager
def step_bar(label: str, total: int | None, enabled: bool) -> Iterator[Callable[[], None] | None]:
    """A tqdm bar over ``total`` steps (None: unknown); yields its ``advance()``, or None
    when disabled."""
    if not enabled:
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=label, unit="step", leave=False, file=sys.stderr) as bar:
        yield lambda: bar.update(1)


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
