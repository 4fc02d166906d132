"""Run folders: ``RUNS_DIR/<method>/<timestamp>-<name>/``."""

from __future__ import annotations

import contextlib
import errno
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
    def snapshots(self) -> Path:
        """Mean raw weights every ``train.snapshot_every_steps`` steps, for post-hoc EMA."""
        return self.path / "snapshots"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch:04d}.safetensors"

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:07d}.safetensors"

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


def run_folder_of(source: Path) -> Path:
    """The run folder ``source`` names: itself, or the folder above the ``checkpoints/`` of
    a checkpoint file (which may be no run folder at all: callers check config.json)."""
    source = Path(source)
    return source if source.is_dir() else source.parent.parent


def find_runs(runs_dir: Path) -> list[RunDir]:
    """Every run folder (one holding config.json) under ``runs_dir``, oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [RunDir(p.parent) for p in sorted(root.glob("*/*/config.json"))]


def is_locked(folder: Path) -> bool:
    """Whether a live process holds ``folder``'s :class:`RunLock` (for display only: it
    reads the pid in the lock file and never takes the lock, so it cannot get in the way
    of a writer starting at that moment)."""
    try:
        pid = int((Path(folder) / RunLock.NAME).read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # a crashed writer's stale file
    except PermissionError:
        return True  # alive, another user's
    return True


class OutputError(OSError):
    """An output that cannot be written (read-only, under a file, disk full); one line."""


class RunLockedError(RuntimeError):
    """Another live process is writing the same run folder."""


def describe_os_error(exc: OSError, action: str = "write") -> str:
    """``cannot write PATH: Permission denied``: an OSError as one line naming the path."""
    where = exc.filename or "the output"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot {action} {where}: {reason}"


def check_writable(folder: Path) -> None:
    """Fail now, with one line, if files cannot be created in ``folder``. Nothing is left
    behind: a missing folder is probed at its nearest existing parent, where it would be
    made.

    Creating and deleting a probe file is the only honest test: permission bits do not
    show a read-only mount, and ``os.access`` is wrong for root.
    """
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise OutputError(errno.ENOTDIR, f"cannot write to {folder}: {existing} is a file, "
                          "not a folder", str(folder))  # fmt: skip
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".diffkit-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(exc.errno, f"cannot write to {folder}: {reason}", str(folder)) from None


def clean_temporaries(folder: Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files that :func:`atomic_write_bytes` leaves behind when
    a process is killed mid-write (SIGKILL, power loss); returns what was removed. Only
    call with the folder's lock held, or a live writer's temp file could go."""
    removed = []
    for sub in (Path(folder), Path(folder) / "checkpoints"):
        if not sub.is_dir():
            continue
        for tmp in sub.glob(".*.tmp"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except FileNotFoundError:
                pass
    return removed


class RunLock:
    """An advisory lock on a folder: ``.lock`` holds the writer's pid under ``flock``.

    The kernel drops a ``flock`` when its process dies, however it dies, so a lock file
    left by a killed run is simply taken over; a live holder makes :meth:`acquire` raise
    :class:`RunLockedError` naming its pid. :meth:`release` deletes the file, so a folder
    nobody writes holds no trace of the lock.
    """

    NAME = ".lock"

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / self.NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise RunLockedError(
                    f"{self.path.parent} is being written by another diffkit process (pid "
                    f"{holder}); wait for it to finish or stop it first"
                ) from None
            # A holder that released meanwhile deleted the file we opened: lock the new one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        with contextlib.suppress(OSError):  # delete while still holding it (see acquire)
            os.unlink(self.path)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()
