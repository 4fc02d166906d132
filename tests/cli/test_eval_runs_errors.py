"""`diffkit eval` and `diffkit runs` on bad input: one line and exit 2 (or, for `runs`, a
listing that marks the damaged run), never a traceback. Nothing here trains: the run and
the feature classifier are freshly initialised networks saved in diffkit's formats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from diffkit.cli.app import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in " ".join(result.output.split()), result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A runs folder with an untrained MNIST classifier and an untrained tiny DDPM."""
    from diffkit.config.resolve import resolve_run_config
    from diffkit.config.run import ClassifierRunConfig, DDPMRunConfig
    from diffkit.eval.features import CLASSIFIER_FILE, save_classifier
    from diffkit.nn.build import build_model
    from diffkit.runs.checkpoint import Checkpoint, save_checkpoint

    root = tmp_path_factory.mktemp("runs")
    clf = resolve_run_config(ClassifierRunConfig, {}, environ={})
    folder = root / "classifier" / "20240101-000000-clf"
    folder.mkdir(parents=True)
    config = clf.model_dump(mode="json")
    (folder / "config.json").write_text(json.dumps(config))
    # untrained, but recorded as qualified: these tests are about what comes after the choice
    save_classifier(folder / CLASSIFIER_FILE, build_model(clf.model).eval(), config, 0.99)

    ddpm = resolve_run_config(DDPMRunConfig, {"preset": "tiny"}, environ={})
    run = root / "ddpm" / "20240101-000000-tiny"
    (run / "checkpoints").mkdir(parents=True)
    config = ddpm.model_dump(mode="json")
    (run / "config.json").write_text(json.dumps(config))
    weights = build_model(ddpm.model).state_dict()
    tensors = {f"{p}.{k}": v.clone() for p in ("model", "ema") for k, v in weights.items()}
    save_checkpoint(run / "checkpoints" / "last.safetensors", Checkpoint(config, tensors))
    return root


def samples_folder(path: Path, labels: list[int] | None = None, n: int = 12) -> Path:
    """A samples folder as `diffkit sample` writes it: shards and sample.json."""
    path.mkdir(parents=True)
    tensors = {"samples": torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8)}
    if labels is not None:
        tensors["labels"] = torch.tensor(labels)
    save_file(tensors, str(path / "samples-00000.safetensors"))
    (path / "sample.json").write_text(json.dumps({"data": {"dataset": "mnist"}}))
    return path


@pytest.fixture
def no_sampling(monkeypatch):
    """Generating any image fails the test: the refusals must come before sampling."""
    from diffkit.methods.pipeline import Pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("images were generated before the input was refused")

    monkeypatch.setattr(Pipeline, "sample", refuse)


def test_eval_unknown_dataset_is_one_line(tmp_path: Path, runs: Path):
    src = samples_folder(tmp_path / "s")
    result = invoke("eval", src, "--dataset", "nope", "--runs-dir", runs)
    assert_one_line_error(result, "--dataset", "unknown dataset 'nope'", "mnist")


@pytest.mark.parametrize("bad", [99, -1])
def test_eval_labels_outside_the_classes(tmp_path: Path, runs: Path, bad: int):
    src = samples_folder(tmp_path / "s", labels=[*range(10), 3, bad])
    result = invoke("eval", src, "--runs-dir", runs, "--device", "cpu")
    assert_one_line_error(result, f"label {bad} is outside", "0..9")
    assert not list((src / "eval").glob("*.json"))


def test_eval_of_more_images_than_memory_holds(runs: Path, no_sampling):
    run = runs / "ddpm" / "20240101-000000-tiny"
    result = invoke("eval", run, "-n", 10**12, "--runs-dir", runs, "--device", "cpu")
    assert_one_line_error(result, "1000000000000 images needs about", "of memory")


def test_eval_of_more_images_than_the_real_floor_has(runs: Path, data_dir: Path, no_sampling):
    run = runs / "ddpm" / "20240101-000000-tiny"
    result = invoke("eval", run, "-n", 70000, "--steps", "1", "--runs-dir", runs,
                    "--data-dir", data_dir, "--device", "cpu")  # fmt: skip
    assert_one_line_error(result, "mnist train split has 60000 images", "fewer than the 70000")


def test_eval_into_an_unwritable_folder_fails_first(tmp_path: Path, runs: Path, monkeypatch):
    import diffkit.eval.features as features

    def never(*args, **kwargs):
        raise AssertionError("the feature network loaded before the output was checked")

    monkeypatch.setattr(features, "load_extractor", never)
    src = samples_folder(tmp_path / "s")
    (src / "eval").write_text("a file where the results folder goes")
    result = invoke("eval", src, "--runs-dir", runs)
    assert_one_line_error(result, str(src / "eval"))
    assert (src / "eval").read_text().startswith("a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_eval_of_a_read_only_samples_folder(tmp_path: Path, runs: Path):
    src = samples_folder(tmp_path / "s")
    src.chmod(0o555)
    try:
        result = invoke("eval", src, "--runs-dir", runs)
    finally:
        src.chmod(0o755)
    assert_one_line_error(result, str(src / "eval"))


def test_a_samples_folder_is_not_a_run(tmp_path: Path, runs: Path):
    from diffkit.app.sources import is_checkpoint

    run = runs / "ddpm" / "20240101-000000-tiny"
    assert is_checkpoint(run) and is_checkpoint(run / "checkpoints" / "last.safetensors")
    src = samples_folder(tmp_path / "s")
    (src / "config.json").write_text("{}")
    assert not is_checkpoint(src)
    (src / "sample.json").unlink()
    assert not is_checkpoint(src)  # the shards alone say so
    assert not is_checkpoint(src / "samples-00000.safetensors")


def test_runs_lists_every_run_and_marks_the_damaged_ones(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths keep the table narrow
    root = tmp_path / "r"
    configs = {
        "good": json.dumps({"name": "good", "train": {"epochs": 3}}),
        "notjson": "{oops",
        "alist": "[1, 2]",
        "trainint": json.dumps({"name": "trainint", "train": 5}),
        "epochstr": json.dumps({"name": "epochstr", "train": {"epochs": "many"}}),
    }
    for name, text in configs.items():
        run = root / "ddpm" / f"20240101-00000{len(name)}-{name}"
        run.mkdir(parents=True)
        (run / "config.json").write_text(text)
        (run / "metrics.jsonl").write_bytes(
            b'garbage\n5\n[1]\n\xff\xfe\n{"loss": "high", "epoch": "x"}\n'
            b'{"step": 10, "epoch": 2, "loss": 0.25}\n{"loss": "nan?", "epoch": 9}\n'
        )
    (root / "ddpm" / "20240101-000004-good" / "summary.json").write_text('["not", "a", "dict"]')
    result = runner.invoke(app, ["runs", "--runs-dir", str(root)])
    assert result.exit_code == 0, result.output
    assert result.exception is None and "Traceback" not in result.output
    # row by run folder: the path column ends in -<name>
    rows = {line.split("│")[9].strip().rsplit("-", 1)[-1]: line
            for line in result.stdout.splitlines() if line.count("│") == 10}  # fmt: skip
    assert sorted(rows) == sorted(configs), result.stdout
    good = rows["good"]
    cells = [c.strip() for c in good.split("│")[1:-1]]
    assert cells[:6] == ["2024-01-01 00:00", "ddpm", "good", "10", "2/3", "no checkpoint"]
    assert cells[6] == "0.2500"
    assert "unreadable config.json" in rows["notjson"] and "unreadable" in rows["alist"]
    assert "malformed config.json" in rows["trainint"] and "malformed" in rows["epochstr"]


def test_metrics_reader_keeps_only_records(tmp_path: Path):
    from diffkit.runs.metrics import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"step": 1}\n7\n"text"\n\xff{"step": 2}\n{"step": 3}\n{"step": 4')
    assert read_metrics(path) == [{"step": 1}, {"step": 3}]


def test_runs_shows_pair_sets_best_scores_and_live_runs(tmp_path: Path, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "r"
    pairs = root / "pairs" / "20261201-101010-p"
    pairs.mkdir(parents=True)
    (pairs / "config.json").write_text(json.dumps({"name": "p", "n": 250, "shard_size": 100}))
    (pairs / "pairs.json").write_text(json.dumps({"complete": False, "shards": {"a": {}}}))
    run = root / "ddpm" / "20261201-111111-live"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": "live", "train": {"epochs": 4,
                                                 "max_steps": 100}}))  # fmt: skip
    (run / "metrics.jsonl").write_text(
        '{"step": 40, "epoch": 1.5, "loss": 0.5}\n{"event": "eval", "step": 40, "fid": 9.5}\n'
        '{"event": "eval", "step": 80, "fid": 7.25}\n{"step": 80, "epoch": 3.0, "loss": 0.4}\n'
    )
    (run / ".lock").write_text(f"{os.getpid()}\n")  # this process is alive
    result = runner.invoke(app, ["runs", "--runs-dir", str(root)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.count("│") == 10]
    cells = {c[2]: c for c in ([x.strip() for x in line.split("│")[1:-1]] for line in lines)}
    assert cells["p"][1] == "pairs" and cells["p"][3] == "1/3 shards"
    assert cells["p"][5] == "incomplete (resume to finish)"
    live = cells["live"]
    assert live[3:8] == ["80/100", "3", "running", "0.4000", "FID 7.25"]
