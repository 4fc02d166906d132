"""Ctrl-C during training writes a checkpoint and exits cleanly; the run then resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


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
