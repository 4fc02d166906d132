"""What the options of several commands check, and the machine settings they make (the
options themselves are declared in :mod:`diffkit.cli.flags`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from diffkit.config.settings import Settings


def in_range(low: float | None = None, high: float | None = None):
    """An option callback for floats: finite and within [low, high]. Typer's own min/max
    let nan through (every comparison with it is false) and name the wrong bound."""

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        too_low = low is not None and value < low
        too_high = high is not None and value > high
        if not math.isfinite(value) or too_low or too_high:
            bounds = [f"{op} {b:g}" for op, b in ((">=", low), ("<=", high)) if b is not None]
            raise typer.BadParameter(f"{value} is not a finite number {' and '.join(bounds)}")
        return value

    return check


SEED_MAX = 2**63 - 2  # torch generators take 64-bit seeds; samplers also use seed + 1


def check_seed(value: int | None) -> int | None:
    # A callback, not min/max: Typer would print the 19-digit bound in every --help.
    if value is not None and not 0 <= value <= SEED_MAX:
        raise typer.BadParameter(f"{value} is not in 0..{SEED_MAX}")
    return value


CONFIG_SEED_MAX = 2**31 - 1  # a run's recorded seed (train.seed, a pair set's seed)


def check_config_seed(value: int | None) -> int | None:
    """A seed a run's config records: 0 .. 2^31 - 1 (the config's own bound)."""
    if value is not None and not 0 <= value <= CONFIG_SEED_MAX:
        raise typer.BadParameter(f"{value} is not in 0..{CONFIG_SEED_MAX}")
    return value


def machine_settings(
    data_dir: Path | None,
    runs_dir: Path | None,
    device: str | None,
    compile: bool | None = None,
    *,
    computes: bool = True,
) -> Settings:
    """The machine settings: env ``DIFFKIT_*`` overridden by the flags that were given.

    This is the CLI's edge, so the process-wide ones are applied here, once: the thread
    count (``DIFFKIT_THREADS``). Library functions never change global torch state."""
    from diffkit.app.machine import machine_settings as settings_from_env
    from diffkit.cli import console

    settings = settings_from_env(data_dir, runs_dir, device, compile, report=console)
    if computes:  # `diffkit runs` only reads files: no torch for it
        _set_threads(settings.threads)
    return settings


def settings_of(options: Mapping[str, Any], *, computes: bool = True) -> Settings:
    """:func:`machine_settings` from a command's options (one it does not have: not given)."""
    names = ("data_dir", "runs_dir", "device", "compile_net")
    return machine_settings(*(options.get(n) for n in names), computes=computes)


def _set_threads(threads: int | None) -> None:
    """torch's CPU threads: DIFFKIT_THREADS, else the cores this process may use. torch
    itself counts the host's cores, which oversubscribes a container given fewer."""
    import torch

    from diffkit.resources import available_cpus

    cores = available_cpus()
    if threads is None and torch.get_num_threads() > cores:
        torch.set_num_threads(cores)
    elif threads is not None:
        torch.set_num_threads(threads)
