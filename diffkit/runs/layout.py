"""Run folders: ``RUNS_DIR/<method>/<timestamp>-<name>/``."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and ``os.replace``: never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


@dataclass(frozen=True)
class RunDir:
    """The files of one run; creating the object touches nothing on disk."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.safetensors"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.safetensors"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch:04d}.safetensors"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def loss_plot(self) -> Path:
        return self.path / "loss.png"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def method(self) -> str:
        return self.path.parent.name

    @classmethod
    def create(
        cls,
        runs_dir: Path,
        method: str,
        name: str,
        now: datetime | None = None,
        *,
        subfolders: bool = True,
    ) -> RunDir:
        """Make a fresh folder (with checkpoints/ and samples/ unless ``subfolders`` is
        off); a clash within the same second gets a numeric suffix."""
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        parent = Path(runs_dir) / method
        parent.mkdir(parents=True, exist_ok=True)
        for i in range(1000):
            path = parent / (f"{stamp}-{name}" + (f"-{i}" if i else ""))
            try:
                path.mkdir()
            except FileExistsError:
                continue
            if subfolders:
                (path / "checkpoints").mkdir()
                (path / "samples").mkdir()
            return cls(path)
        raise FileExistsError(f"cannot create a run folder under {parent}")


def find_runs(runs_dir: Path) -> list[RunDir]:
    """Every run folder (one holding config.json) under ``runs_dir``, oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [RunDir(p.parent) for p in sorted(root.glob("*/*/config.json"))]
