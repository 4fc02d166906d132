"""`diffkit eval --lpips`: the diversity of samples beside real images', and a VAE run's
reconstructions (MSE, PSNR, LPIPS, rFID); a missing backbone file exits 2 before any work."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("lpips")

from tests.cli.test_eval_feature_net import samples
from tests.cli.util import invoke, last_line
from tests.eval.util import alex_backbone, classifier_run


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    runs = tmp_path / "runs"
    classifier_run(runs, "20240101-000000", 0.99)
    return runs, alex_backbone(tmp_path / "alexnet.pth")


def test_eval_reports_lpips_diversity_beside_real_images(setup, tmp_path: Path, data_dir):
    runs, weights = setup
    result = invoke("eval", samples(tmp_path / "s", n=12), "--runs-dir", runs, "--data-dir",
                    data_dir, "--lpips", "--lpips-weights", weights)  # fmt: skip
    report = json.loads(last_line(result).read_text())
    ours, real = report["metrics"]["lpips_diversity"], report["floor"]["lpips_diversity"]
    assert ours["pairs"] == real["pairs"] == 6 and ours["mean"] > 0 and real["mean"] > 0
    assert report["lpips"]["kind"] == "lpips-alex" and report["lpips"]["path"] == str(weights)
    assert "LPIPS diversity" in result.output


def test_eval_of_a_vae_scores_its_reconstructions(setup, tmp_path: Path, data_dir):
    runs, weights = setup
    vae = last_line(invoke("train", "vae", "--latent-dim", "8", "--max-steps", "3",
                           "--limit-data", "64", "--batch-size", "32", "--data-dir", data_dir,
                           "--runs-dir", runs))  # fmt: skip
    result = invoke("eval", vae, "-n", "16", "--runs-dir", runs, "--data-dir", data_dir,
                    "--lpips", "--lpips-weights", weights)  # fmt: skip
    report = json.loads(last_line(result).read_text())
    assert report["kind"] == "vae-reconstruction" and report["n"] == 16
    m = report["metrics"]
    assert m["recon_mse"] > 0 and m["psnr"] == pytest.approx(10 * math.log10(4 / m["recon_mse"]))
    assert m["lpips"]["pairs"] == 16 and m["lpips"]["mean"] > 0
    assert {"fid", "kid", "is"} <= set(m) and "fid" in report["floor"]
    assert last_line(result).parent == vae / "eval"
    assert "reconstruction MSE" in result.output and "LPIPS to input" in result.output


def test_missing_lpips_weights_exit_2_before_any_work(setup, tmp_path: Path, data_dir):
    runs, _ = setup
    src = samples(tmp_path / "s")
    result = invoke("eval", src, "--runs-dir", runs, "--data-dir", data_dir, "--lpips",
                    "--lpips-weights", tmp_path / "absent.pth")  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "absent.pth" in result.output and "never downloads" in result.output
    assert "Traceback" not in result.output and not (src / "eval").exists()
