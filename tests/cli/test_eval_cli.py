"""`diffkit train classifier`, `diffkit eval` (single, sweep, saved samples) and evaluation
during training, end to end on tiny slices. The quick classifier (4000 images, ~95 %) does
not qualify as a feature network by itself, so every command here names it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffkit.cli.app import app
from diffkit.runs.metrics import read_metrics

runner = CliRunner()
TINY = ["--preset", "tiny", "--limit-data", "64", "--batch-size", "16", "--epochs", "2"]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def classifier(runs: Path, data_dir: Path, tmp_path_factory) -> Path:
    config = tmp_path_factory.mktemp("cfg") / "quick.toml"
    config.write_text("[train]\nwarmup_steps = 10\n")
    result = invoke(
        "train", "classifier", "--dataset", "mnist", "--limit-data", "4000", "--epochs", "2",
        "--config", config, "--data-dir", data_dir, "--runs-dir", runs, "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip().splitlines()[-1])
    assert (path / "classifier.safetensors").is_file()
    assert "test accuracy" in result.output
    return path


@pytest.fixture(scope="module")
def run_with_eval(classifier: Path, runs: Path, data_dir: Path) -> Path:
    result = invoke(
        "train", "ddpm", *TINY, "--eval-every", "1", "--eval-n", "20", "--keep-best",
        "--data-dir", data_dir, "--runs-dir", runs, "--sample-every", "0",
        "--classifier", classifier,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "epoch 1 eval (20 images" in result.output and "best so far" in result.output
    return Path(result.stdout.strip().splitlines()[-1])


def test_classifier_run_folder(classifier: Path):
    summary = json.loads((classifier / "summary.json").read_text())
    assert summary["reason"] == "finished" and 0.9 < summary["test_accuracy"] <= 1.0
    cfg = json.loads((classifier / "config.json").read_text())
    assert cfg["method"] == "classifier" and cfg["train"]["lr"] == 2e-3  # the fixed recipe
    assert cfg["train"]["warmup_steps"] == 10  # ... under the --config file
    assert (classifier / "loss.png").is_file()


def test_training_evaluates_and_keeps_the_best(run_with_eval: Path):
    evals = [r for r in read_metrics(run_with_eval / "metrics.jsonl") if r.get("event") == "eval"]
    assert [r["epoch"] for r in evals] == [1, 2]
    assert all(r["fid"] >= 0 and r["eval_n"] == 20 for r in evals)
    best = run_with_eval / "checkpoints" / "best.safetensors"
    assert best.is_file()
    from diffkit.runs.checkpoint import load_checkpoint

    state = load_checkpoint(best, prefixes=()).train_state["best"]
    assert state["fid"] == min(r["fid"] for r in evals)
    assert (run_with_eval / "loss.png").is_file()


def test_eval_writes_json_with_floor(run_with_eval: Path, classifier: Path, runs: Path,
                                    data_dir: Path):  # fmt: skip
    common = (run_with_eval, "-n", "24", "--steps", "2", "--runs-dir", runs,
              "--data-dir", data_dir, "--device", "cpu")  # fmt: skip
    refused = invoke("eval", *common)
    assert refused.exit_code == 2 and "data.limit=4000" in " ".join(refused.output.split())
    result = invoke("eval", *common, "--classifier", classifier)
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == run_with_eval / "eval" and path.suffix == ".json"
    report = json.loads(path.read_text())
    for key in ("fid", "kid", "kid_std", "is", "is_std", "precision", "recall"):
        assert key in report["metrics"] and key in report["floor"]
    assert report["n"] == 24 and report["metrics"]["n"] == report["floor"]["n"] == 24
    assert report["sampler"] == "dpm++2m" and report["steps"] == 2
    summary = json.loads((classifier / "summary.json").read_text())
    assert report["feature_sha256"] == summary["sha256"] == report["feature_net"]["sha256"]
    assert report["feature_net"]["test_accuracy"] == summary["test_accuracy"]
    assert report["feature_net"]["name"] == str(classifier)
    assert "warning: feature classifier" in result.output
    assert "real floor" in result.stdout and "FID" in result.stdout


def test_eval_sweep(run_with_eval: Path, classifier: Path, runs: Path, data_dir: Path):
    result = invoke(
        "eval", run_with_eval, "-n", "12", "--sweep", "steps=1,3", "--samplers", "ddpm,ddim",
        "--runs-dir", runs, "--data-dir", data_dir, "--device", "cpu", "--classifier", classifier,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip().splitlines()[-1])
    report = json.loads((folder / "sweep.json").read_text())
    assert [(p["sampler"], p["steps"]) for p in report["points"]] == [
        ("ddpm", 1), ("ddpm", 3), ("ddim", 1), ("ddim", 3)
    ]  # fmt: skip
    assert all(p["wall_seconds"] > 0 and p["metrics"]["fid"] >= 0 for p in report["points"])
    assert "floor" in report and (folder / "sweep.png").is_file()
    assert len(list(folder.glob("grid-*.png"))) == 4


def test_eval_on_a_karras_grid(run_with_eval: Path, classifier: Path, data_dir: Path):
    """--spacing reaches the sampler (single and sweep) and is recorded in the report."""
    common = ("-n", "12", "--spacing", "karras", "--data-dir", data_dir,
              "--classifier", classifier)  # fmt: skip
    result = invoke("eval", run_with_eval, "--sampler", "dpm++2m", "--steps", "3", *common)
    assert result.exit_code == 0, result.output
    report = json.loads(Path(result.stdout.strip().splitlines()[-1]).read_text())
    assert report["spacing"] == "karras" and report["nfe"] == 3
    result = invoke("eval", run_with_eval, "--sweep", "steps=2", "--samplers", "heun,ddim",
                    *common)  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert json.loads((folder / "sweep.json").read_text())["spacing"] == "karras"


def test_eval_saved_samples(run_with_eval: Path, classifier: Path, data_dir: Path, tmp_path):
    out = tmp_path / "s"
    assert invoke("sample", run_with_eval, "-n", "16", "--steps", "2", "--out", out).exit_code == 0
    result = invoke("eval", out, "--classifier", classifier, "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    report = json.loads(Path(result.stdout.strip().splitlines()[-1]).read_text())
    assert report["dataset"] == "mnist" and report["n"] == 16
    assert json.loads((out / "sample.json").read_text())["data"]["dataset"] == "mnist"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sweep", "steps=a,b"], "steps must be numbers"),
        (["--sweep", "eta=1,2"], "can sweep steps, guidance or control_scale"),
        (["--sweep", "guidance=0,1"], "needs a class-conditional model"),
        (["--guidance", "3"], "needs a class-conditional model"),
        (["--sweep", "steps=1", "--samplers", "bogus"], "cannot sweep bogus"),
        (["--sweep", "steps=5000"], "between 1 and 1000"),
        (["-n", "3"], "at least 10"),
        (["--features", "inception", "--inception-weights", "/nonexistent.pth"], "never downloads"),
        (["--dataset", "fashion-mnist"], "differs"),
    ],
)
def test_eval_bad_input_exits_2(run_with_eval: Path, runs: Path, data_dir, extra, message):
    result = invoke("eval", run_with_eval, "--runs-dir", runs, "--data-dir", data_dir, *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_eval_without_a_classifier_says_how_to_get_one(run_with_eval: Path, tmp_path, data_dir):
    result = invoke("eval", run_with_eval, "--runs-dir", tmp_path, "--data-dir", data_dir)
    assert result.exit_code == 2
    assert "diffkit train classifier --dataset mnist" in result.output


def test_keep_best_needs_eval_every(tmp_path: Path, data_dir: Path):
    result = invoke("train", "ddpm", *TINY, "--keep-best", "--data-dir", data_dir)
    assert result.exit_code == 2 and "keep_best needs train.eval_every" in result.output
    assert not (tmp_path / "runs").exists()


def test_eval_a_bare_samples_file_needs_its_dataset(classifier, runs: Path, data_dir, tmp_path):
    from safetensors.torch import save_file

    from diffkit.config.run import DataConfig
    from diffkit.data.registry import load_dataset

    test = load_dataset(DataConfig(dataset="mnist", limit=40), data_dir, "test")
    file = tmp_path / "real.safetensors"
    save_file({"samples": test.images, "labels": test.labels}, str(file))
    result = invoke("eval", file, "--runs-dir", runs, "--data-dir", data_dir)
    assert result.exit_code == 2 and "pass --dataset" in result.output
    result = invoke("eval", file, "--dataset", "mnist", "--classifier", classifier,
                    "--data-dir", data_dir)  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(Path(result.stdout.strip().splitlines()[-1]).read_text())
    assert report["metrics"]["class_accuracy"]["all"] > 0.8  # real digits, true labels
    assert "class accuracy [all]" in result.stdout


def test_guidance_sweep_of_a_conditional_model(classifier: Path, runs: Path, data_dir: Path):
    result = invoke(
        "train", "ddpm", *TINY, "--cond", "class", "--eval-every", "2", "--eval-n", "20",
        "--data-dir", data_dir, "--runs-dir", runs, "--sample-every", "0",
        "--classifier", classifier,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    evals = [r for r in read_metrics(run / "metrics.jsonl") if r.get("event") == "eval"]
    assert 0 <= evals[-1]["class_accuracy"] <= 1
    result = invoke("eval", run, "--sweep", "guidance=0,1,3", "--steps", "3", "-n", "20",
                    "--samplers", "ddim", "--runs-dir", runs, "--data-dir", data_dir,
                    "--classifier", classifier)  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip().splitlines()[-1])
    sweep = json.loads((folder / "sweep.json").read_text())
    assert sweep["swept"] == "guidance"
    assert [p["guidance"] for p in sweep["points"]] == [0, 1, 3]
    assert all("all" in p["metrics"]["class_accuracy"] for p in sweep["points"])
    assert (folder / "sweep.png").is_file() and (folder / "grid-ddim-0003-w3.png").is_file()


def test_eval_of_a_flow_sweeps_ode_solvers(classifier: Path, runs: Path, data_dir: Path):
    result = invoke("train", "rf", *TINY, "--eval-every", "1", "--eval-n", "20",
                    "--data-dir", data_dir, "--runs-dir", runs, "--sample-every", "0",
                    "--classifier", classifier)  # fmt: skip
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    evals = [r for r in read_metrics(run / "metrics.jsonl") if r.get("event") == "eval"]
    assert len(evals) == 2  # in-training evaluation of a flow uses Euler
    result = invoke("eval", run, "--sweep", "steps=1,2", "-n", "12", "--samplers", "euler,rk4",
                    "--data-dir", data_dir, "--runs-dir", runs,
                    "--classifier", classifier)  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = Path(result.stdout.strip().splitlines()[-1])
    points = json.loads((folder / "sweep.json").read_text())["points"]
    assert [(p["sampler"], p["steps"]) for p in points] == [
        ("euler", 1), ("euler", 2), ("rk4", 1), ("rk4", 2)]  # fmt: skip
    result = invoke("eval", run, "-n", "12", "--sampler", "dopri5", "--data-dir", data_dir,
                    "--runs-dir", runs, "--classifier", classifier)  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(Path(result.stdout.strip().splitlines()[-1]).read_text())
    assert report["sampler"] == "dopri5" and report["nfe"] >= 6
    result = invoke("eval", run, "--sweep", "steps=1", "--samplers", "ddim", "-n", "12")
    assert result.exit_code == 2 and "cannot sweep ddim" in result.output


def test_cache_bench_scores_every_point(run_with_eval: Path, classifier: Path, tmp_path: Path):
    r = invoke("cache-bench", run_with_eval, "--intervals", "2", "--steps", "4", "-n", "12",
               "--classifier", classifier, "--out", tmp_path / "bench")  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "bench" / "cache-bench.json").read_text())
    assert report["feature_sha256"] and report["features"] == "classifier"
    points = report["points"]
    assert [p["label"] for p in points] == ["uncached-4", "N=2", "dpm++2m-2"]
    for p in points:
        assert p["metrics"]["fid"] > 0 and "kid" in p["metrics"]
    assert "FID" in r.output and "MAC ratio" in r.output


def test_eval_scores_a_diffusers_pipeline_folder(classifier: Path, runs: Path, data_dir: Path,
                                                 tmp_path: Path):  # fmt: skip
    """A foreign model says nothing of its data: --dataset names it and must fit its shape."""
    diffusers = pytest.importorskip("diffusers")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=28, in_channels=1, out_channels=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=4,
    )  # fmt: skip
    folder = tmp_path / "ddpm"
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(50)).save_pretrained(folder)
    common = ("-n", "12", "--steps", "2", "--runs-dir", runs, "--data-dir", data_dir)
    result = invoke("eval", folder, *common, "--out", tmp_path / "e")
    assert result.exit_code == 2 and "pass --dataset" in result.output
    result = invoke("eval", folder, "--dataset", "cifar10", *common)
    assert result.exit_code == 2 and "draws 1x28x28 images; cifar10 has 3x32x32" in result.output
    result = invoke("eval", folder, "--dataset", "mnist", *common, "--out", tmp_path / "e",
                    "--classifier", classifier)  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(Path(result.stdout.strip().splitlines()[-1]).read_text())
    assert report["dataset"] == "mnist" and report["n"] == 12 and report["sampler"] == "dpm++2m"
    assert report["metrics"]["fid"] > 0 and str(folder) in report["source"]
