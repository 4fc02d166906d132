"""``diffkit train vae`` at the CLI boundary."""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffkit.cli.app import app
from tests.eval.util import alex_backbone

runner = CliRunner()


def test_train_vae_writes_the_vae(data_dir: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # without an LPIPS term, never imported
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


def _tiny_spatial(data_dir: Path, runs: Path) -> list[str]:
    return ["train", "vae", "--latent", "spatial", "--max-steps", "2", "--limit-data", "64",
            "--batch-size", "32", "--sample-every", "0", "--data-dir", str(data_dir),
            "--runs-dir", str(runs)]  # fmt: skip


def test_an_lpips_term_trains_and_is_reported(data_dir: Path, tmp_path: Path):
    pytest.importorskip("lpips")
    alex = alex_backbone(tmp_path / "alex.pth")
    narrow = tmp_path / "narrow.toml"  # 8 channels: scoring the 10,000 test images is quick
    narrow.write_text("[model]\nbase_channels = 8\n")
    args = [*_tiny_spatial(data_dir, tmp_path / "runs"), "--lpips-weight", "1",
            "--lpips-weights", str(alex), "--config", str(narrow)]  # fmt: skip
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    run = Path(r.stdout.strip().splitlines()[-1])
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["lpips_weight"], cfg["lpips_net"]) == (1.0, "alex")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and 0 < summary["lpips"] < 2
    assert summary["lpips_backbone"]["sha256"] == hashlib.sha256(alex.read_bytes()).hexdigest()
    assert f"LPIPS {summary['lpips']:.4f}" in r.stderr


def test_a_missing_lpips_backbone_exits_2_before_the_run_folder(data_dir: Path, tmp_path: Path):
    missing = tmp_path / "nowhere" / "alex.pth"
    args = [*_tiny_spatial(data_dir, tmp_path / "runs"), "--lpips-weight", "1",
            "--lpips-weights", str(missing)]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert str(missing) in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "vae").exists()


def test_without_the_lpips_package_an_lpips_term_exits_2(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(sys.modules, "lpips", None)  # any import of it now fails
    args = [*_tiny_spatial(data_dir, tmp_path / "runs"), "--lpips-weight", "1",
            "--lpips-weights", str(alex_backbone(tmp_path / "alex.pth"))]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "lpips package" in r.stderr, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs" / "vae").exists()


def test_net_kl_f4_sets_the_imagenet100_recipes_autoencoder(tmp_path: Path):
    r = runner.invoke(app, ["train", "vae", "--net", "kl-f4", "--latent-channels", "4",
                            "--dataset", "cifar10", "--print-config"])  # fmt: skip
    assert r.exit_code == 0, r.output
    model = tomllib.loads(r.stdout)["model"]
    assert model["latent"] == "spatial" and model["base_channels"] == 128
    assert model["channel_mults"] == [1, 2, 4] and model["num_res_blocks"] == 2
    assert model["patch_size"] == 1 and model["latent_channels"] == 4  # the flag wins
    r = runner.invoke(app, ["train", "vae", "--net", "kl-f4", "--latent", "flat"])
    assert r.exit_code == 2 and "spatial" in r.stderr, r.output


def test_the_net_choices_are_the_nets():
    from typer.main import get_command

    from diffkit.config.run import VAE_NETS

    command = get_command(app).commands["train"].commands["vae"]
    net = next(p for p in command.params if p.name == "net")
    assert set(net.type_descriptor.choices) == set(VAE_NETS)


def test_resume_extends_a_vae_run_and_refuses_changes(data_dir: Path, tmp_path: Path):
    base = [
        "train",
        "vae",
        "--latent-dim",
        "16",
        "--limit-data",
        "64",
        "--batch-size",
        "16",
        "--sample-every",
        "0",
        "--data-dir",
        str(data_dir),
        "--runs-dir",
        str(tmp_path),
    ]
    r = runner.invoke(app, [*base, "--max-steps", "2", "--checkpoint-every-steps", "1",
                            "--keep-checkpoints", "1"], catch_exceptions=False)  # fmt: skip
    assert r.exit_code == 0, r.output
    run = Path(r.stdout.strip().splitlines()[-1])
    numbered = sorted(p.name for p in (run / "checkpoints").glob("*-*.safetensors"))
    assert numbered == ["step-0000002.safetensors"]  # steps 1 and 2, the newest kept
    resume = ["train", "vae", "--resume", str(run), "--data-dir", str(data_dir),
              "--runs-dir", str(tmp_path)]  # fmt: skip
    r = runner.invoke(app, [*resume, "--latent-dim", "8"])
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.output
    assert "cannot change model.latent_dim" in r.stderr
    r = runner.invoke(app, [*resume, "--max-steps", "3"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    assert (run / "vae.safetensors").is_file()
    assert [p.name for p in tmp_path.joinpath("vae").iterdir()] == [run.name]
