"""The machine a command runs on: its settings, and whether it is busy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from diffkit.app.report import QUIET, Reporter

if TYPE_CHECKING:
    from diffkit.config.settings import Settings


def machine_settings(
    data_dir: Path | None = None,
    runs_dir: Path | None = None,
    device: str | None = None,
    compile: bool | None = None,
    report: Reporter = QUIET,
) -> Settings:
    """Env ``DIFFKIT_*`` overridden by the values given (None: not given); a ``DIFFKIT_*``
    variable that no setting or config reads is reported as a warning."""
    from pydantic import ValidationError

    from diffkit.config import run
    from diffkit.config.resolve import ConfigError, env_names, format_validation_error, unknown_env
    from diffkit.config.settings import Settings

    overrides = {"data_dir": data_dir, "runs_dir": runs_dir, "device": device,
                 "compile": compile}  # fmt: skip
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    configs = (run.DDPMRunConfig, run.FlowRunConfig, run.ClassifierRunConfig, run.VAERunConfig,
               run.ControlNetRunConfig, run.DenoiserRunConfig, run.PairsConfig)  # fmt: skip
    for line in unknown_env(env_names(configs, Settings)):
        report.warning(line)
    return settings


def busy_machine_note() -> str | None:
    """A hint when other jobs keep every core busy and torch runs several threads: its
    threads then wait for each other at every operation (docs/getting-started.md)."""
    import os

    import torch

    from diffkit.resources import available_cpus

    cores, threads = available_cpus(), torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if threads < 2 or load < cores + 1 or os.environ.get("DIFFKIT_THREADS"):
        return None
    return (f"note: the machine is busy (load {load:.1f} on {cores} cores); if training "
            f"is slow, try DIFFKIT_THREADS=1 (now {threads} threads)")  # fmt: skip
