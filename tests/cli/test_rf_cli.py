"""End to end: train rf (pixel and latent), sample with every solver, reflow, distil."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.util import TINY, invoke, last_line


@pytest.fixture(scope="module")
def rf(data_dir: Path, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return last_line(invoke(
        "train", "rf", *TINY, "--cond", "class", "--time-sampling", "logit_normal",
        "--data-dir", data_dir, "--runs-dir", runs,
    ))  # fmt: skip


def test_train_rf_writes_a_flow_run(rf: Path):
    cfg = json.loads((rf / "config.json").read_text())
    assert rf.parent.name == "rf" and cfg["method"] == "rf"
    assert cfg["flow"]["time_sampling"] == "logit_normal" and cfg["model"]["num_classes"] == 10
    assert cfg["train"]["preview_sampler"] == "euler"


@pytest.mark.parametrize("solver", ["euler", "midpoint", "heun", "rk4", "dopri5"])
def test_sample_with_every_solver(rf: Path, solver: str, tmp_path: Path):
    out = last_line(invoke(
        "sample", rf, "--solver", solver, "--steps", "2", "-n", "4", "--class", "3",
        "--guidance", "2", "--out", tmp_path / solver,
    ))  # fmt: skip
    meta = json.loads((out / "sample.json").read_text())
    assert meta["sampler"] == solver and meta["nfe"] >= 1 and (out / "grid.png").is_file()
    if solver != "dopri5":
        assert meta["nfe"] == 2 * {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[solver]


def test_flow_refuses_ddpm_samplers_and_resume_needs_its_own_command(rf: Path, data_dir: Path):
    r = invoke("sample", rf, "--sampler", "ddim")
    assert r.exit_code == 2 and "samples with euler" in r.output
    r = invoke("train", "ddpm", "--resume", rf)
    assert r.exit_code == 2 and "diffkit train rf --resume" in r.output
    r = invoke("train", "rf", "--resume", rf, "--max-steps", "4", "--data-dir", data_dir)
    assert r.exit_code == 0, r.output


def test_reflow_pairs_train_distil_and_straightness(rf: Path, data_dir: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    pairs = last_line(invoke("reflow", "make-pairs", rf, "-n", "40", "--steps", "3",
                             "--shard-size", "16", "--runs-dir", runs))  # fmt: skip
    manifest = json.loads((pairs / "pairs.json").read_text())
    assert manifest["complete"] and len(manifest["shards"]) == 3
    assert json.loads((pairs / "config.json").read_text())["source"] == str(rf)
    two = last_line(invoke("reflow", "train", pairs, "--max-steps", "3", "--batch-size", "8",
                           "--straightness-n", "4", "--runs-dir", runs,
                           "--data-dir", data_dir))  # fmt: skip
    cfg = json.loads((two / "config.json").read_text())
    assert two.parent.name == "reflow" and cfg["reflow"]["generation"] == 2
    assert cfg["reflow"]["init_from"] == str(rf)
    assert json.loads((two / "straightness.json").read_text())["n"] == 4
    # Repeatable: pairs of the 2-RF train a 3-RF; --distill a one-step model.
    pairs2 = last_line(invoke("reflow", "make-pairs", two, "-n", "16", "--steps", "2",
                              "--runs-dir", runs))  # fmt: skip
    three = last_line(invoke("reflow", "train", pairs2, "--max-steps", "2", "--batch-size", "8",
                             "--straightness-n", "0", "--runs-dir", runs))  # fmt: skip
    assert json.loads((three / "config.json").read_text())["reflow"]["generation"] == 3
    one = last_line(invoke(
        "reflow", "train", pairs, "--distill", "1", "--max-steps", "2", "--batch-size", "8",
        "--straightness-n", "0", "--runs-dir", runs,
    ))  # fmt: skip
    out = last_line(invoke("sample", one, "-n", "4", "--class", "1", "--out", tmp_path / "s"))
    assert json.loads((out / "sample.json").read_text())["steps"] == 1  # its own k
    r = invoke("reflow", "straightness", two, "-n", "4", "--steps", "5")
    assert r.exit_code == 0 and float(r.stdout.strip().splitlines()[-1]) >= 0
    # A reflow run resumes on its own pairs; runs lists pair sets beside the runs.
    resumed = last_line(invoke("reflow", "train", "--resume", two, "--max-steps", "5",
                               "--straightness-n", "0", "--data-dir", data_dir))  # fmt: skip
    assert resumed == two
    assert json.loads((two / "summary.json").read_text())["steps"] == 5
    r = invoke("reflow", "train", pairs, "--resume", two)
    assert r.exit_code == 2 and "--resume continues" in r.output
    r = invoke("runs", "--runs-dir", runs)
    assert r.exit_code == 0 and "pairs" in r.output and "reflow" in r.output


def test_make_pairs_resume_and_bad_input(rf: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    pairs = last_line(invoke("reflow", "make-pairs", rf, "-n", "8", "--steps", "2",
                             "--shard-size", "4", "--runs-dir", runs))  # fmt: skip
    (pairs / "shard-00001.safetensors").unlink()
    r = invoke("reflow", "train", pairs, "--runs-dir", runs)
    assert r.exit_code == 2 and "missing" in r.output
    assert last_line(invoke("reflow", "make-pairs", "--resume", pairs)) == pairs
    assert (pairs / "shard-00001.safetensors").is_file()
    r = invoke("reflow", "make-pairs", rf, "--resume", pairs)
    assert r.exit_code == 2 and "give no SOURCE" in r.output
    r = invoke("reflow", "train", tmp_path / "nowhere")
    assert r.exit_code == 2 and "not a pair set" in r.output
    r = invoke("reflow", "train", pairs, "--distill", "0")
    assert r.exit_code == 2 and "--distill" in r.output


def test_reflow_of_a_ddpm_is_refused(data_dir: Path, tmp_path: Path):
    ddpm = last_line(invoke("train", "ddpm", *TINY, "--data-dir", data_dir,
                            "--runs-dir", tmp_path))  # fmt: skip
    r = invoke("reflow", "make-pairs", ddpm, "-n", "4")
    assert r.exit_code == 2 and "needs a rectified flow" in r.output
    # ...but any DDPM samples through the ODE solvers and DPM-Solver++(2M).
    for solver in ("heun", "dpm++2m"):
        r = invoke("sample", ddpm, "--solver", solver, "--steps", "3", "-n", "2",
                   "--out", tmp_path / solver)  # fmt: skip
        assert r.exit_code == 0, r.output


def test_latent_rf_on_a_vae(data_dir: Path, tmp_path: Path):
    vae = last_line(invoke("train", "vae", "--latent-dim", "8", "--limit-data", "64",
                           "--batch-size", "16", "--max-steps", "2", "--sample-every", "0",
                           "--data-dir", data_dir, "--runs-dir", tmp_path))  # fmt: skip
    run = last_line(invoke("train", "rf", "--vae", vae, "--limit-data", "64", "--batch-size",
                           "16", "--max-steps", "2", "--sample-every", "0",
                           "--data-dir", data_dir, "--runs-dir", tmp_path))  # fmt: skip
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["method"] == "rf" and cfg["model"]["kind"] == "mlp" and cfg["latent"]
    out = last_line(invoke("sample", run, "--steps", "2", "-n", "3", "--out", tmp_path / "s"))
    assert (out / "grid.png").is_file()
    for cmd in (("sample", run, "--cache-interval", "2"), ("cache-bench", run, "--no-fid")):
        r = invoke(*cmd)  # DeepCache needs a UNet; a flat latent's denoiser is an MLP
        assert r.exit_code == 2 and "needs a UNet" in r.output, r.output
    pairs = last_line(invoke("reflow", "make-pairs", run, "-n", "32", "--steps", "2",
                             "--runs-dir", tmp_path))  # fmt: skip
    two = last_line(invoke("reflow", "train", pairs, "--max-steps", "2", "--batch-size", "16",
                           "--straightness-n", "0", "--runs-dir", tmp_path))  # fmt: skip
    assert json.loads((two / "config.json").read_text())["latent"] == cfg["latent"]
    out = last_line(invoke("sample", two, "--steps", "2", "-n", "3", "--out", tmp_path / "s2"))
    assert (out / "grid.png").is_file()
