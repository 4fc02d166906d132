"""Ctrl-C during training writes a checkpoint and exits cleanly; the run then resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def test_ctrl_c_checkpoints_and_resume_continues(data_dir: Path, tmp_path: Path):
    env = os.environ | {
        "DIFFKIT_DATA_DIR": str(data_dir),
        "DIFFKIT_RUNS_DIR": str(tmp_path),
        "DIFFKIT_DOWNLOAD": "false",
    }
    cmd = [
        sys.executable,
        "-m",
        "diffkit.cli.app",
        "train",
        "ddpm",
        "--preset",
        "tiny",
        "--limit-data",
        "512",
        "--batch-size",
        "16",
        "--epochs",
        "20",
        "--sample-every",
        "0",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    metrics = None
    while time.time() < deadline:
        found = list(tmp_path.glob("ddpm/*/metrics.jsonl"))
        if found and found[0].read_text().count("\n") >= 1:
            metrics = found[0]
            break
        time.sleep(0.2)
    assert metrics is not None, "training never logged"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err
    run = metrics.parent
    from diffkit.runs import load_checkpoint

    step = load_checkpoint(run / "checkpoints" / "last.safetensors").train_state["position"]["step"]
    assert step > 0
    r = subprocess.run(
        [*cmd[:5], "--resume", str(run), "--max-steps", str(step + 3)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "summary.json").read_text())["steps"] == step + 3


def _entry(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "diffkit.cli.entry", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.parametrize(
    ("sig", "code", "word"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_signal_while_starting_is_one_line(sig, code, word, tmp_path: Path):
    """Ctrl-C or SIGTERM while torch is still being imported: no traceback, no files. The
    app itself starts without torch (a few tenths of a second), so the signal lands while
    the app loads or while the command imports torch; either way it is one line."""
    env = os.environ | {"DIFFKIT_RUNS_DIR": str(tmp_path / "runs")}
    proc = _entry("train", "ddpm", "--preset", "tiny", env=env)
    time.sleep(0.3)  # importing torch takes seconds; the entry point is already running
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines() in (
        [f"error: {word} while starting; nothing was written"],
        [f"error: {word}; files already on disk are intact"],
    ), err
    assert not (tmp_path / "runs").exists()


def test_sigterm_in_make_pairs_keeps_shards_and_says_how_to_resume(data_dir: Path, tmp_path):
    env = os.environ | {"DIFFKIT_DATA_DIR": str(data_dir), "DIFFKIT_RUNS_DIR": str(tmp_path),
                        "DIFFKIT_DOWNLOAD": "false"}  # fmt: skip
    train = subprocess.run(
        [sys.executable, "-m", "diffkit.cli.entry", "train", "rf", "--preset", "tiny",
         "--limit-data", "64", "--batch-size", "16", "--max-steps", "2", "--sample-every", "0"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    flow = train.stdout.strip().splitlines()[-1]
    proc = _entry("reflow", "make-pairs", flow, "-n", "100000", "--shard-size", "16",
                  "--batch-size", "16", "--steps", "2", env=env)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("pairs/*/*.safetensors")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("error: terminated; finished shards")
    assert "--resume" in lines[-1]
