"""`--print-config` and the warning for unknown DIFFKIT_* variables, at the CLI boundary."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffkit.cli.app import app


@pytest.mark.parametrize(
    "command",
    [
        ["train", "ddpm", "--preset", "tiny", "--epochs", "3", "--cond", "class"],
        ["train", "classifier", "--epochs", "2"],
        ["train", "denoiser", "--sigma", "0.5"],
    ],
    ids=lambda c: c[1],
)
def test_print_config_prints_toml_that_reads_back_and_writes_nothing(tmp_path, command):
    runs = tmp_path / "runs"
    runner = CliRunner()
    env = {"DIFFKIT_RUNS_DIR": str(runs)}
    first = runner.invoke(app, [*command, "--print-config"], env=env)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("# diffkit ") and "[train]" in first.stdout
    assert not runs.exists()  # nothing written, not even the runs folder
    file = tmp_path / "resolved.toml"
    file.write_text(first.stdout)
    again = runner.invoke(app, [*command[:2], "--config", str(file), "--print-config"], env=env)
    assert again.exit_code == 0, again.output
    assert again.stdout == first.stdout


def test_unknown_diffkit_variables_are_warned_about(tmp_path):
    env = {"DIFFKIT_TRAIN__EPOCS": "3", "DIFFKIT_RUNS_DIR": str(tmp_path)}
    result = CliRunner().invoke(
        app, ["train", "ddpm", "--preset", "tiny", "--print-config"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "warning: DIFFKIT_TRAIN__EPOCS is not a diffkit setting (did you mean " \
        "DIFFKIT_TRAIN__EPOCHS?); ignored" in result.stderr  # fmt: skip
    assert "epochs = 1" in result.stdout  # the tiny preset's, not 3


def test_classifier_resume_refuses_a_new_dataset(tmp_path: Path):
    """--resume continues a classifier run as configured: --dataset is refused (exit 2,
    one line) before anything is read or written."""
    run = tmp_path / "classifier" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text('{"method": "classifier"}')
    (run / "checkpoints" / "last.safetensors").write_bytes(b"")
    r = CliRunner().invoke(app, ["train", "classifier", "--resume", str(run), "--dataset",
                                 "fashion-mnist", "--runs-dir", str(tmp_path)])  # fmt: skip
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() == "error: --resume continues a run as configured; cannot change " \
        "data.dataset"  # fmt: skip
