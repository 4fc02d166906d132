"""``diffkit train vae`` at the CLI boundary."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from diffkit.cli.app import app

runner = CliRunner()


def test_train_vae_writes_the_vae(data_dir: Path, tmp_path: Path):
    args = ["train", "vae", "--latent-dim", "16", "--max-steps", "5", "--limit-data", "256",
            "--batch-size", "32", "--kl-weight", "0.5", "--name", "cli", "--data-dir",
            str(data_dir), "--runs-dir", str(tmp_path)]  # fmt: skip
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    run = Path(r.stdout.strip().splitlines()[-1])
    assert run.parent == tmp_path / "vae" and run.name.endswith("-cli")
    assert (run / "vae.safetensors").is_file() and (run / "recon.png").is_file()
    assert "recon MSE" in r.stderr and "img/s" in r.stderr
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["latent_dim"] == 16 and cfg["kl_weight"] == 0.5
    assert json.loads((run / "summary.json").read_text())["reason"] == "finished"


def test_bad_latent_dim_exits_2_with_one_line(data_dir: Path, tmp_path: Path):
    args = ["train", "vae", "--latent-dim", "0", "--data-dir", str(data_dir), "--runs-dir",
            str(tmp_path)]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert "model.latent_dim" in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "vae").exists()
