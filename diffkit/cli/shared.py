"""Helpers shared by several commands (train and reflow; sample, eval and cache-bench), so
that no command module imports another's private functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from diffkit.cli import console
from diffkit.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, UsageError
from diffkit.cli.signals import EXIT_TERMINATED
from diffkit.runs.layout import RunDir, check_writable

if TYPE_CHECKING:
    from diffkit.app.common import CacheRequest, ControlRequest
    from diffkit.app.train import Planned


def picked(cls: Any, options: Mapping[str, Any], **values: Any) -> Any:
    """A request dataclass ``cls`` from the options that are its fields (lists as tuples)
    and ``values``."""
    given = {f.name: options[f.name] for f in fields(cls) if f.name in options}
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    return cls(**(given | values))


def control_request(o: Mapping[str, Any]) -> ControlRequest:
    """The ControlNet options (:data:`diffkit.cli.flags.CONTROL`) as the request takes them."""
    from diffkit.app.common import ControlRequest

    return ControlRequest(o["hint"], o["hint_is_edges"], o["control_scale"], o["control_start"],
                          o["control_end"], o["guess_mode"])  # fmt: skip


def cache_request(o: Mapping[str, Any], interval: int) -> CacheRequest:
    """DeepCache's options (:data:`diffkit.cli.flags.CACHE_OPTIONS`) at ``interval``."""
    from diffkit.app.common import CacheRequest

    return CacheRequest(interval, o["cache_branch"], o["cache_schedule"], o["cache_center"],
                        o["cache_mode"])  # fmt: skip


def logger_names(values: list[str] | None) -> tuple[str, ...]:
    """``--logger`` values as logger names, each one's package checked to be installed
    (a missing one: exit 2 naming the pip command, before any run folder exists)."""
    from diffkit.training.loggers import check_installed, parse_loggers

    try:
        names = parse_loggers(values or [])
    except ValueError as exc:
        raise UsageError(f"--logger: {exc}") from None
    check_installed(names)
    return names


@contextmanager
def train_hooks(
    loggers: tuple[str, ...] = (), enabled: bool = True
) -> Iterator[tuple[Callable[[Any], None], Callable[[RunDir], None]]]:
    """``(on_event, on_run_dir)`` for a training method: the progress bar, and the
    ``loggers``, which start in the run folder once the method names it and are closed
    however the block ends. ``enabled`` False (a process other than rank 0): neither."""
    from diffkit.training.loggers import RunLoggers

    progress = console.TrainProgress(enabled=enabled)
    sinks = RunLoggers(loggers if enabled else (), warn=console.warning)

    def on_event(event) -> None:
        progress(event)
        sinks(event)

    def on_run_dir(run: RunDir) -> None:
        console.info(f"run folder: {run.path}")
        sinks.open(run)

    try:
        yield on_event, on_run_dir
    finally:
        sinks.close()


def begin(plan: Planned, settings, print_config: bool) -> None:
    """``--print-config`` (print and exit), else check that the run's folder (a resumed
    run's own, or RUNS_DIR) is writable before any training starts."""
    show_config(plan.cfg, print_config)
    check_writable(plan.writes_to or settings.runs_dir)


def train_diffusion(
    plan: Planned, settings, classifier: Path | None = None, loggers: tuple[str, ...] = ()
) -> RunDir | None:
    """Train (or resume) a pixel or latent DDPM or flow and report how it ended; the run
    folder on the main process after a finished run."""
    from diffkit.app.train import run

    ended = run(plan, settings, lambda main: train_hooks(loggers, enabled=main), classifier)
    return None if ended is None else report_stop(*ended)


def show_config(cfg, requested: bool) -> None:
    """``--print-config``: the resolved config as TOML on stdout, then exit 0 before
    anything is written (``--config`` reads the output back to the same config)."""
    if not requested:
        return
    from diffkit.config.resolve import to_toml

    header = (f"# diffkit {cfg.method} config, resolved from flags > --config > DIFFKIT_* "
              "> preset; use it with --config FILE\n")  # fmt: skip
    console.out.print(header + to_toml(cfg.model_dump(mode="json")), markup=False,
                      highlight=False, end="")  # fmt: skip
    raise typer.Exit(0)


def report_stop(run: RunDir, result) -> RunDir:
    """Print the run folder and how training ended; exit non-zero unless it finished."""
    console.out.print(str(run.path))
    match result.reason:
        case "non_finite":
            kept = (f"the last good checkpoint is kept at {result.checkpoint}"
                    if result.checkpoint is not None else "no checkpoint was written")  # fmt: skip
            console.error(f"loss became NaN/inf at step {result.step}; stopped, {kept}")
            raise typer.Exit(EXIT_FAILED)
        case "interrupted":
            how = "terminated" if result.stop_signal == "SIGTERM" else "interrupted"
            console.info(f"{how} at step {result.step}; resume with --resume {run.path}")
            raise typer.Exit(stop_code(result))
        case _:
            loss = f", loss {result.last_loss:.4f}" if result.last_loss is not None else ""
            epochs = f"{result.epochs_done:.2f}".rstrip("0").rstrip(".")
            console.info(
                f"{result.reason}: {result.step} steps, {epochs} "
                f"epoch{'' if epochs == '1' else 's'}, {result.images_per_sec:.0f} img/s{loss}"
            )
    return run


def stop_code(result) -> int:
    """130 after Ctrl-C, 143 after SIGTERM: what a shell expects of a stopped job."""
    return EXIT_TERMINATED if result.stop_signal == "SIGTERM" else EXIT_INTERRUPTED
