"""Helpers shared by the run-folder tests: a tiny training config, settings, and what a
test compares before and after a failing call."""

from __future__ import annotations

from pathlib import Path

from diffkit.config import DDPMRunConfig, Settings
from diffkit.config.resolve import resolve_run_config
from diffkit.runs import RunDir
from diffkit.runs.layout import RunLock, RunLockedError

TINY = {"preset": "tiny", "data.limit": 64, "train.batch_size": 16, "train.max_steps": 3,
        "train.sample_every": 0, "train.log_every": 1}  # fmt: skip
KEPT = ("config.json", "summary.json", "metrics.jsonl")


def tiny_cfg(**train) -> DDPMRunConfig:
    flags = TINY | {f"train.{k}": v for k, v in train.items()}
    return resolve_run_config(DDPMRunConfig, flags, environ={})


def settings(runs: Path, data_dir: Path | None = None) -> Settings:
    return Settings(data_dir=data_dir or runs, runs_dir=runs, download=False, device="cpu")


def snapshot(run: RunDir) -> dict[str, bytes]:
    return {name: (run.path / name).read_bytes() for name in KEPT}


def locked(folder: Path) -> bool:
    """Whether another holder has ``folder``'s lock (a fresh RunLock cannot take it)."""
    try:
        RunLock(folder).acquire().release()
    except RunLockedError:
        return True
    return False
