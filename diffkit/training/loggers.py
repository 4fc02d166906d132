"""Experiment loggers: TensorBoard, Weights & Biases and CSV, fed by the loop's events.

Each logger is an ``on_event`` consumer of :class:`~diffkit.training.loop.TrainEvent`
objects and writes inside the run folder: ``tb/`` (TensorBoard event files), ``wandb/``
(a W&B run, offline unless ``WANDB_MODE`` says otherwise) and ``metrics.csv``. They record
the training loss, learning rate and images/s at every ``log`` event, the scores of every
``eval`` event, and the preview grids where the backend shows images.

Loggers observe; they never change what is trained. Nothing about them enters the run's
config (a resume may add or drop one), and a logger that fails is reported once through
``warn`` and dropped while training goes on. :class:`RunLoggers` does nothing until
:meth:`RunLoggers.open` names the run folder, which only the main process does, so only
rank 0 logs. A resumed run continues at its checkpoint's step: the CSV file keeps its rows
up to that step and appends, TensorBoard purges the events past it, and W&B reuses the run
id stored in ``wandb/``.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, ClassVar

from diffkit.errors import DependencyError, describe_exception
from diffkit.runs.layout import RunDir, atomic_write_bytes
from diffkit.training.loop import TrainEvent

LOGGERS = ("tensorboard", "wandb", "csv")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
"""The package each optional logger imports; each is an extra of the same name."""

TB_DIR, WANDB_DIR, CSV_FILE = "tb", "wandb", "metrics.csv"
TRAIN_KEYS = ("epoch", "loss", "lr", "img_per_sec", "elapsed")
EVAL_KEYS = ("fid", "kid", "kid_std", "is", "precision", "recall", "class_accuracy",
             "edge_f1", "edge_f1_exact", "sobel_l1", "eval_n", "eval_seconds")  # fmt: skip
CSV_COLUMNS = ("event", "step", *TRAIN_KEYS, *EVAL_KEYS)
"""Fixed whatever the method, so files of different runs line up; a cell a row has no
value for is empty (metrics.jsonl keeps every key)."""


def parse_loggers(values: Iterable[str]) -> tuple[str, ...]:
    """``--logger`` values, each a name or a comma list, as names in order without
    repeats; ``none`` adds nothing. ValueError for an unknown name."""
    names: list[str] = []
    for value in values:
        for part in (p.strip().lower() for p in value.split(",")):
            if part in ("", "none") or part in names:
                continue
            if part not in LOGGERS:
                raise ValueError(f"unknown logger {part!r}; use {', '.join(LOGGERS)} or none")
            names.append(part)
    return tuple(names)


def check_installed(names: Iterable[str]) -> None:
    """DependencyError naming the pip command if a logger's package is missing (checked
    without importing it, so before anything is written)."""
    for name in names:
        package = PACKAGES.get(name)
        if package is not None and importlib.util.find_spec(package) is None:
            raise DependencyError(
                f"the {name} logger needs the {package} package: "
                f"pip install -e '.[{name}]' (or pip install {package})"
            )


def _numbers(data: Mapping[str, Any], keys: Iterable[str] | None = None) -> dict[str, float]:
    """The int and float entries of ``data`` (of ``keys`` only, if given); bools and
    strings (e.g. a feature digest) are left out."""
    wanted = data.keys() if keys is None else keys
    return {k: data[k] for k in wanted
            if isinstance(data.get(k), int | float) and not isinstance(data[k], bool)}  # fmt: skip


class Logger:
    """One backend. It is created at the ``start`` event, so it knows the step a resumed
    run continues from; ``config`` is the run's config.json."""

    name: ClassVar[str] = ""

    def __init__(self, run: RunDir, config: dict[str, Any], step: int) -> None:
        self.run = run

    def scalars(self, group: str, step: int, values: dict[str, float]) -> None:
        """``values`` of ``group`` (train or eval) at ``step``."""

    def image(self, step: int, path: Path) -> None:
        """The preview grid written at ``step``."""

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class CsvLogger(Logger):
    """``metrics.csv``: one row per log or eval event, columns :data:`CSV_COLUMNS`."""

    name = "csv"

    def __init__(self, run: RunDir, config: dict[str, Any], step: int) -> None:
        super().__init__(run, config, step)
        self.path = run.path / CSV_FILE
        fresh = not self.path.is_file()
        if not fresh:
            self._keep_until(step)
        self._file = self.path.open("a", newline="", buffering=1)
        self._writer = csv.DictWriter(self._file, CSV_COLUMNS, extrasaction="ignore")
        if fresh:
            self._writer.writeheader()

    def _keep_until(self, step: int) -> None:
        """A resumed run drops the rows past its checkpoint, as metrics.jsonl does, and
        rewrites the header (columns matched by name)."""
        with self.path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if _step_of(r) is not None and _step_of(r) <= step]
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.path, out.getvalue().encode())

    def scalars(self, group: str, step: int, values: dict[str, float]) -> None:
        self._writer.writerow({"event": group, "step": step, **values})

    def close(self) -> None:
        self._file.close()


def _step_of(row: dict[str, str]) -> int | None:
    try:
        return int(row.get("step") or "")
    except ValueError:
        return None


class TensorBoardLogger(Logger):
    """``tb/``: scalars as ``train/loss``, ``eval/fid``, ...; previews as ``preview``."""

    name = "tensorboard"

    def __init__(self, run: RunDir, config: dict[str, Any], step: int) -> None:
        super().__init__(run, config, step)
        from torch.utils.tensorboard import SummaryWriter

        # Events at or past purge_step, left by the process a resume continues, are hidden.
        purge = step + 1 if step else None
        self._writer = SummaryWriter(log_dir=str(run.path / TB_DIR), purge_step=purge)
        if not step:  # indented four spaces: a code block in TensorBoard's markdown
            text = json.dumps(config, indent=2).replace("\n", "\n    ")
            self._writer.add_text("config", "    " + text, 0)

    def scalars(self, group: str, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self._writer.add_scalar(f"{group}/{key}", value, step)

    def image(self, step: int, path: Path) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"))  # (H, W, 3) uint8
        self._writer.add_image("preview", pixels, step, dataformats="HWC")

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbLogger(Logger):
    """A W&B run in ``wandb/``, offline unless ``WANDB_MODE`` is set (``wandb sync``
    uploads it later); project ``WANDB_PROJECT`` or ``diffkit``. Values are logged against
    their training step (the ``step`` key), so a resumed run continues its curves."""

    name = "wandb"

    def __init__(self, run: RunDir, config: dict[str, Any], step: int) -> None:
        super().__init__(run, config, step)
        import wandb

        folder = run.path / WANDB_DIR
        folder.mkdir(exist_ok=True)
        id_file = folder / "diffkit-run-id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:16]
        id_file.write_text(run_id)
        quiet = wandb.Settings(quiet=True, silent=True, console="off", disable_git=True,
                               save_code=False, x_disable_stats=True)  # fmt: skip
        self._wandb = wandb
        self._run = wandb.init(
            project=None if os.environ.get("WANDB_PROJECT") else "diffkit",
            dir=str(run.path), id=run_id, name=run.path.name, resume="allow", config=config,
            mode=os.environ.get("WANDB_MODE") or "offline", settings=quiet,
        )  # fmt: skip
        self._run.define_metric("step")
        self._run.define_metric("*", step_metric="step")

    def scalars(self, group: str, step: int, values: dict[str, float]) -> None:
        self._run.log({"step": step} | {f"{group}/{k}": v for k, v in values.items()})

    def image(self, step: int, path: Path) -> None:
        self._run.log({"step": step, "preview": self._wandb.Image(str(path))})

    def close(self) -> None:
        self._run.finish()


BACKENDS: dict[str, type[Logger]] = {
    "tensorboard": TensorBoardLogger, "wandb": WandbLogger, "csv": CsvLogger,
}  # fmt: skip


class RunLoggers:
    """The chosen loggers as one ``on_event`` consumer.

    Events before :meth:`open` (and on any process that never opens it) are ignored. A
    logger that raises, while starting or later, is closed as far as it can be, dropped,
    and reported once through ``warn``; the others, and training, carry on.
    """

    def __init__(
        self,
        names: Iterable[str],
        warn: Callable[[str], None] = lambda message: None,
        backends: Mapping[str, type[Logger]] = BACKENDS,
    ) -> None:
        self.names = tuple(names)
        self.warn = warn
        self.backends = backends
        self.active: dict[str, Logger] = {}
        self.run: RunDir | None = None
        self.config: dict[str, Any] = {}

    def open(self, run: RunDir) -> None:
        """Log into ``run``; its config.json (already written) is what W&B records."""
        self.run = run
        try:
            self.config = json.loads(run.config.read_text())
        except (OSError, ValueError):
            self.config = {}

    def __call__(self, event: TrainEvent) -> None:
        if self.run is None:
            return
        if event.kind == "start":
            self._start(self.run, event.step)
            return
        for name, logger in list(self.active.items()):
            self._guarded(name, lambda logger=logger: _dispatch(logger, event))
        if event.kind == "stop":
            self.close()

    def _start(self, run: RunDir, step: int) -> None:
        for name in self.names:
            if name in self.active:
                continue
            try:
                self.active[name] = self.backends[name](run, self.config, step)
            except Exception as exc:
                self.warn(f"logger {name} could not start ({describe_exception(exc)}); "
                          "training goes on without it")  # fmt: skip

    def _guarded(self, name: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:
            logger = self.active.pop(name)
            with suppress(Exception):  # it is broken: closing is as far as it can go
                logger.close()
            self.warn(f"logger {name} failed ({describe_exception(exc)}); it is dropped, "
                      "training goes on")  # fmt: skip

    def close(self) -> None:
        """Close every logger (at the ``stop`` event, or when training ends otherwise)."""
        for name, logger in list(self.active.items()):
            self._guarded(name, logger.close)
        self.active.clear()


def _dispatch(logger: Logger, event: TrainEvent) -> None:
    """What of ``event`` goes to ``logger``."""
    match event.kind:
        case "log":
            logger.scalars("train", event.step, _numbers(event.data, TRAIN_KEYS))
        case "eval":
            scores = {k: v for k, v in _numbers(event.data).items() if k != "step"}
            logger.scalars("eval", event.step, scores)
        case "preview" if "image" in event.data:
            logger.image(event.step, Path(event.data["image"]))
        case "epoch" | "checkpoint":
            logger.flush()
