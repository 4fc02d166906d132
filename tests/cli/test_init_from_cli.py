"""``train ddpm|rf --init-from RUN``: fine-tuning from a trained run's weights, at the CLI
boundary."""

from __future__ import annotations

import json
from pathlib import Path

from diffkit.cli.app import app
from diffkit.eval.features import tensor_digest
from diffkit.runs.checkpoint import load_checkpoint
from tests.cli.util import TINY, invoke, last_line, runner


def _trained(data_dir: Path, runs: Path, *extra: str) -> Path:
    return last_line(invoke("train", "ddpm", *TINY, "--data-dir", data_dir, "--runs-dir", runs,
                            *extra))  # fmt: skip


def test_init_from_starts_from_the_ema_weights_and_records_them(data_dir: Path, tmp_path: Path):
    source = _trained(data_dir, tmp_path)
    ema = load_checkpoint(source / "checkpoints" / "last.safetensors").section("ema")
    # a learning rate so small that one step leaves the loaded weights as they were
    tuned = _trained(data_dir, tmp_path, "--init-from", source, "--max-steps", "1",
                     "--lr", "1e-12", "--name", "tuned")  # fmt: skip
    cfg = json.loads((tuned / "config.json").read_text())
    assert cfg["init_from"] == {"source": str(source.resolve()), "weights": "ema",
                                "sha256": tensor_digest(ema)}  # fmt: skip
    after = load_checkpoint(tuned / "checkpoints" / "last.safetensors")
    assert after.train_state["position"]["step"] == 1  # a new schedule: step 1, not 4
    model = after.section("model")
    assert max(float((model[k] - ema[k]).abs().max()) for k in ema) < 1e-6
    raw = load_checkpoint(source / "checkpoints" / "last.safetensors").section("model")
    assert any(not (raw[k] == ema[k]).all() for k in raw)  # so the EMA was what loaded


def test_init_from_refuses_a_model_of_another_shape(data_dir: Path, tmp_path: Path):
    source = _trained(data_dir, tmp_path)
    args = ["train", "ddpm", *TINY, "--data-dir", str(data_dir), "--runs-dir", str(tmp_path),
            "--cond", "class", "--init-from", str(source)]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert len(line.splitlines()) == 1 and "ema." in line and "Traceback" not in r.output
    assert sorted(p.name for p in (tmp_path / "ddpm").iterdir()) == [source.name]


def test_init_from_excludes_resume_and_needs_a_run(data_dir: Path, tmp_path: Path):
    source = _trained(data_dir, tmp_path)
    r = runner.invoke(app, ["train", "ddpm", "--resume", str(source), "--init-from", str(source)])
    assert r.exit_code == 2 and "--init-from" in r.stderr, r.output
    r = runner.invoke(app, ["train", "ddpm", "--preset", "tiny", "--init-weights", "model"])
    assert r.exit_code == 2 and "--init-weights needs --init-from" in r.stderr, r.output
    r = runner.invoke(app, ["train", "rf", "--preset", "tiny", "--init-from",
                            str(tmp_path / "nowhere")])  # fmt: skip
    assert r.exit_code == 2 and "nowhere" in r.stderr, r.output
