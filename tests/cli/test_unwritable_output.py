"""Outputs that cannot be written end in one ``error:`` line, exit 2, before any work.

Tests run as root in CI, where permission bits do not stop a write; a read-only mount
and a full disk are therefore simulated at the system-call boundary (``tempfile.mkstemp``
and ``os.open``), and a path under a plain file is used for real."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from diffkit.runs.layout import OutputError, atomic_write_bytes, check_writable
from tests.cli.util import TINY, invoke, last_line


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir: Path) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return last_line(invoke("train", "ddpm", *TINY, "--data-dir", data_dir, "--runs-dir", runs))


def _read_only(monkeypatch, under: Path) -> None:
    """Make every new file below ``under`` fail as on a read-only mount."""
    real_mkstemp, real_open = tempfile.mkstemp, os.open

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and Path(dir).resolve().is_relative_to(under.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(dir))
        return real_mkstemp(*args, dir=dir, **kw)

    def open_(path, flags, *args, **kw):
        if flags & os.O_CREAT and Path(path).resolve().is_relative_to(under.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "open", open_)


def _one_error(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_check_writable(tmp_path):
    check_writable(tmp_path / "new" / "deeper")
    assert not any(tmp_path.iterdir())  # probed at the nearest parent; nothing made
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_writable(tmp_path / "f" / "sub")


@pytest.mark.parametrize(
    "command",
    [
        ["train", "ddpm", "--preset", "tiny", "--max-steps", "1"],
        ["train", "vae", "--max-steps", "1"],
        ["train", "classifier", "--max-steps", "1"],
    ],
)
def test_read_only_runs_dir(command, tmp_path, monkeypatch, data_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    result = invoke(*command, "--runs-dir", ro, "--data-dir", data_dir)
    _one_error(result, "Read-only file system", str(ro))
    assert not any(ro.iterdir())


def test_runs_dir_env_pointing_at_a_file(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("DIFFKIT_RUNS_DIR", str(tmp_path / "file"))
    _one_error(invoke("train", "ddpm", "--preset", "tiny"), "is a file")
    assert (tmp_path / "file").read_text() == "x"


def test_make_pairs_into_read_only_runs_dir(run, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    _one_error(invoke("reflow", "make-pairs", run, "--runs-dir", ro), "Read-only")


def test_sample_out_on_read_only_mount(run, tmp_path, monkeypatch):
    _read_only(monkeypatch, tmp_path)
    _one_error(invoke("sample", run, "-n", "2", "--steps", "1", "--out", tmp_path / "o"),
               "Read-only")  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_resume_of_a_read_only_run(run, monkeypatch):
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    _read_only(monkeypatch, run)
    _one_error(invoke("train", "ddpm", "--resume", run, "--max-steps", "5"), "Read-only")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "last.safetensors"
    atomic_write_bytes(target, b"old")

    def full(fd):  # a full disk often shows only when the data is flushed
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temp left
