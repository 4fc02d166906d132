"""Which feature network `diffkit eval` and `train --eval-every` score with: printed and
recorded (name, sha256, test accuracy, why), an unqualified classifier skipped or refused
unless named, and the TF-Inception backend's missing weights. The classifiers are untrained
tiny CNNs saved as `diffkit train classifier` saves them, with the accuracy a test needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.cli.util import TINY, invoke, last_line
from tests.eval.util import classifier_run


def samples(path: Path, n: int = 12) -> Path:
    """A samples folder as `diffkit sample` writes it (random images)."""
    path.mkdir(parents=True)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)
    save_file({"samples": images}, str(path / "samples-00000.safetensors"))
    (path / "sample.json").write_text(json.dumps({"data": {"dataset": "mnist"}}))
    return path


def flat(output: str) -> str:
    return " ".join(output.split())


def test_automatic_choice_skips_a_weak_classifier(tmp_path: Path, data_dir: Path):
    runs = tmp_path / "runs"
    good = classifier_run(runs, "20240101-000000", 0.992)
    weak = classifier_run(runs, "20240102-000000", 0.169, flags={"train.max_steps": 20},
                          reason="max_steps")  # fmt: skip
    result = invoke("eval", samples(tmp_path / "s"), "--runs-dir", runs, "--data-dir", data_dir)
    report = json.loads(last_line(result).read_text())
    net = report["feature_net"]
    assert net["name"] == str(good) and net["sha256"] == report["feature_sha256"]
    assert net["test_accuracy"] == 0.992 and net["qualified"] and net["warnings"] == []
    assert net["skipped"] == [{"name": str(weak), "problems": [
        "16.90 % test accuracy, below the 98 % required for mnist",
        "trained on a limited slice (train.max_steps=20)"]}]  # fmt: skip
    out = flat(result.output)
    assert (
        f"features: classifier {good} (sha256 {net['sha256'][:12]}, test accuracy 99.20 %)" in out
    )
    assert "chosen automatically: the most accurate of 1 qualified" in out
    assert "skipped 1 unqualified" in out and "warning" not in out


def test_a_weak_classifier_alone_is_refused(tmp_path: Path):
    runs = tmp_path / "runs"
    weak = classifier_run(runs, "20240102-000000", 0.169, flags={"data.limit": 256})
    src = samples(tmp_path / "s")
    result = invoke("eval", src, "--runs-dir", runs)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    for part in (str(weak), "16.90 %", "98 % required for mnist", "data.limit=256",
                 f"pass --classifier {weak} to use it anyway"):  # fmt: skip
        assert part in flat(result.output)
    assert not (src / "eval").exists()


def test_a_named_weak_classifier_is_used_with_a_warning(tmp_path: Path, data_dir: Path):
    runs = tmp_path / "runs"
    weak = classifier_run(runs, "20240102-000000", 0.169)
    result = invoke("eval", samples(tmp_path / "s"), "--classifier", weak, "--runs-dir", runs,
                    "--data-dir", data_dir)  # fmt: skip
    net = json.loads(last_line(result).read_text())["feature_net"]
    assert net["name"] == str(weak) and net["test_accuracy"] == 0.169
    assert not net["qualified"] and net["chosen"] == "named with --classifier"
    assert "warning: feature classifier" in flat(result.output)
    assert "does not qualify for mnist (16.90 % test accuracy, below the 98 %" in net["warnings"][0]


def test_an_unrecorded_accuracy_is_measured(tmp_path: Path, data_dir: Path):
    runs = tmp_path / "runs"
    unknown = classifier_run(runs, "20240102-000000", None)
    src = samples(tmp_path / "s")
    assert "test accuracy unknown" in flat(invoke("eval", src, "--runs-dir", runs).output)
    result = invoke("eval", src, "--classifier", unknown, "--runs-dir", runs,
                    "--data-dir", data_dir)  # fmt: skip
    net = json.loads(last_line(result).read_text())["feature_net"]
    assert net["accuracy_from"] == "measured on 10000 mnist test images by this evaluation"
    assert 0 <= net["test_accuracy"] <= 1 and "measured on 10000" in flat(result.output)


def test_training_evaluation_names_its_classifier(tmp_path: Path, data_dir: Path, monkeypatch):
    monkeypatch.setenv("DIFFKIT_TRAIN__EVAL_STEPS", "2")  # the default 50 DDIM steps: ~15 s
    runs = tmp_path / "runs"
    weak = classifier_run(runs, "20240102-000000", 0.5)
    common = ("--eval-every", "1", "--eval-n", "10", "--data-dir", data_dir, "--runs-dir", runs)
    refused = invoke("train", "ddpm", *TINY, *common)
    assert refused.exit_code == 2 and f"pass --classifier {weak}" in flat(refused.output)
    assert not (runs / "ddpm").exists()  # refused before any run folder
    good = classifier_run(runs, "20240101-000000", 0.99)
    result = invoke("train", "ddpm", *TINY, *common)
    run = last_line(result)
    assert f"features: classifier {good}" in flat(result.output)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r.get("event") == "eval"]
    assert evals and all(r["feature_net"] == str(good) and r["feature_accuracy"] == 0.99
                         for r in evals)  # fmt: skip
    sweep = invoke("eval", run, "--sweep", "steps=1", "--samplers", "ddim", "-n", "10",
                   "--classifier", weak, "--runs-dir", runs, "--data-dir", data_dir)  # fmt: skip
    report = json.loads((last_line(sweep) / "sweep.json").read_text())
    assert report["feature_net"]["name"] == str(weak) and report["feature_net"]["warnings"]
    assert "warning: feature classifier" in flat(sweep.output)


@pytest.mark.parametrize("weights", [None, "missing.pth"])
def test_tf_inception_without_its_weights_exits_2(tmp_path: Path, monkeypatch, weights):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no real cache is consulted
    extra = () if weights is None else ("--tf-inception-weights", tmp_path / weights)
    result = invoke("eval", samples(tmp_path / "s"), "--features", "tf-inception", *extra)
    assert result.exit_code == 2, result.output
    expected = tmp_path / (
        weights or "torch/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth"
    )
    out = flat(result.output)
    assert f"TF-Inception weights not found at {expected}" in out and "never downloads" in out
    assert "releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth" in out
