"""Everything diffkit prints goes through here (rich, on stderr except results)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:
    from diffkit.training import TrainEvent


out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_wide_out = Console(highlight=False, soft_wrap=True, width=160)  # stdout when not a terminal


def error(message: str) -> None:
    # The message is text, not rich markup: "[0, 1]" or a path with brackets must
    # print as written.
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True)


def info(message: str) -> None:
    err.print(message)


def warning(message: str) -> None:
    """Something the user should know that does not stop the command (text, not markup)."""
    err.print(f"[bold yellow]warning:[/] {escape(message)}", markup=True)


def features(about: dict[str, Any]) -> None:
    """The feature network scores are computed with (an extractor's ``about()``): its name,
    sha256, test accuracy and why it was chosen; then its warnings."""
    err.print(f"features: {about['summary']}", markup=False, highlight=False)
    for message in about.get("warnings", ()):
        warning(message)


class TrainProgress:
    """Renders training events as a progress bar with loss, img/s and ETA."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.plain: PlainLines | None = None  # stderr is a log or a pipe: lines, no bar
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[ips]} img/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
            disable=not enabled or not err.is_terminal,  # a finished bar in a log is noise
        )
        self.task: Any = None

    def __call__(self, event: TrainEvent) -> None:
        if not self.enabled:
            return
        match event.kind:
            case "data":  # before the bar starts
                d = event.data
                err.print(f"{d['dataset']}: skipped {d['skipped']} unreadable or oversized "
                          f"image file(s); training on {d['images']}", markup=False)  # fmt: skip
                if d.get("empty_classes"):
                    warning(f"{d['dataset']}: no readable image in class(es) "
                            f"{', '.join(d['empty_classes'])}; they keep their labels but "
                            "the model never sees them")  # fmt: skip
            case "features":  # the in-training evaluation's feature network, before start
                features(event.data)
            case "start":
                from diffkit.app.machine import busy_machine_note

                note = busy_machine_note()
                if note:
                    err.print(note, markup=False)
                if not err.is_terminal:
                    self.plain = PlainLines("train step", event.data["total_steps"])
                    self.plain.done = event.step
                self.progress.start()
                self.task = self.progress.add_task(
                    "train",
                    total=event.data["total_steps"],
                    completed=event.step,
                    loss="-",
                    ips="-",
                )
            case "log" if self.plain is not None:
                self.plain.advance(event.step - self.plain.done, loss=f"{event.data['loss']:.4f}",
                                   img_s=f"{event.data['img_per_sec']:.0f}")  # fmt: skip
            case "log":
                self.progress.update(
                    self.task,
                    completed=event.step,
                    loss=f"{event.data['loss']:.4f}",
                    ips=f"{event.data['img_per_sec']:.0f}",
                )
            case "epoch":
                loss = event.data.get("loss")
                self.progress.console.print(
                    f"epoch {event.epoch} done, step {event.step}"
                    + (f", loss {loss:.4f}" if loss is not None else "")
                )
            case "eval":
                d = event.data
                self.progress.console.print(
                    f"epoch {event.epoch} eval ({d['eval_n']} images, {d['eval_seconds']:.0f} s):"
                    f" FID {d['fid']:.3f}, KID {d['kid']:.4g}"
                    + (f", edge F1 {d['edge_f1']:.3f}" if "edge_f1" in d else "")
                    + (", best so far" if d.get("best") else "")
                )
            case "warning":  # e.g. torch.compile fell back to eager
                message = escape(event.data["message"])
                self.progress.console.print(f"[bold yellow]warning:[/] {message}", markup=True)
            case "stop" if self.task is None:  # the run had nothing left to do
                pass
            case "stop":
                self.progress.update(self.task, completed=event.step)
                self.progress.stop()


class PlainLines:
    """Progress for logs and pipes, where a bar is noise: one plain line every ``every``
    seconds with the count, the rate and the time left."""

    def __init__(self, label: str, total: int | None, every: float = 10.0) -> None:
        self.label, self.total, self.every = label, total, every
        self.done, self.t0 = 0, time.perf_counter()
        self.last = self.t0

    def advance(self, n: int = 1, **fields: str) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            self.print(now, fields)

    def print(self, now: float, fields: dict[str, str]) -> None:
        rate = self.done / max(now - self.t0, 1e-9)
        of = f"/{self.total}" if self.total else ""
        eta = ""
        if self.total and rate > 0:
            eta = f", eta {_clock((self.total - self.done) / rate)}"
        extra = "".join(f", {k} {v}" for k, v in fields.items())
        err.print(f"{self.label}: {self.done}{of}{extra}, {rate:.3g}/s{eta}", markup=False)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@contextmanager
def steps(label: str, total: int | None) -> Iterator[Callable[..., None]]:
    """A progress bar over ``total`` steps (plain lines when stderr is not a terminal);
    yields ``advance(n=1)``."""
    if not err.is_terminal:
        yield PlainLines(label, total).advance
        return
    with Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), console=err, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task(label, total=total)
        yield lambda n=1: progress.advance(task, n)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[escape(str(v)) for v in r])  # cells are text, not rich markup
    # Logs and pipes get 160 columns, not rich's default of 80 (print(width=...) does not
    # widen a table: its columns are measured against the console's own width).
    (out if out.is_terminal else _wide_out).print(t)
