"""Temp files of an atomic write killed by SIGKILL: left behind (nothing can run on
SIGKILL), never mistaken for the real file, and removed by the next writer of the folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from diffkit.runs.layout import RunLock, atomic_write_bytes, clean_temporaries

# A child that starts an atomic write of checkpoints/last.safetensors and hangs in fsync,
# i.e. with the temp file written but not yet renamed.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from diffkit.runs.layout import atomic_write_bytes
    target = Path(sys.argv[1])
    def hang(fd):
        print("writing", flush=True)
        time.sleep(60)
    os.fsync = hang
    atomic_write_bytes(target, b"new" * 1000)
    """
)


def test_sigkill_mid_write_leaves_the_old_file_and_a_temp_that_the_next_writer_removes(
    tmp_path: Path,
):
    target = tmp_path / "checkpoints" / "last.safetensors"
    atomic_write_bytes(target, b"old")
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(target)],
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    temps = list(target.parent.glob(".last.safetensors.*.tmp"))
    assert len(temps) == 1 and target.read_bytes() == b"old"
    with RunLock(tmp_path):  # what every writer does before touching the folder
        assert clean_temporaries(tmp_path) == temps
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.safetensors"]


def test_clean_temporaries_leaves_other_files(tmp_path: Path):
    """No age threshold: the lock, not the clock, says that nobody is writing."""
    (tmp_path / "checkpoints").mkdir()
    keep = [tmp_path / "config.json", tmp_path / "checkpoints" / "epoch-0001.safetensors",
            tmp_path / "notes.tmp"]  # fmt: skip
    for p in keep:
        p.write_text("x")
    (tmp_path / ".config.json.abc.tmp").write_text("torn")
    assert [p.name for p in clean_temporaries(tmp_path)] == [".config.json.abc.tmp"]
    assert all(p.exists() for p in keep) and os.listdir(tmp_path)
