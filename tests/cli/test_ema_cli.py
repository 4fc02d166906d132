"""`diffkit ema`: post-hoc EMA checkpoints from a run's snapshots, at the CLI boundary."""

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from diffkit.cli.app import app
from diffkit.runs import load_checkpoint

runner = CliRunner()
TINY = ["--preset", "tiny", "--limit-data", "64", "--batch-size", "16", "--epochs", "1"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, extra in (("snap", ["--snapshot-every-steps", "2"]), ("plain", [])):
        r = invoke("train", "ddpm", *TINY, *extra, "--data-dir", data_dir, "--runs-dir", root,
                   "--name", name)  # fmt: skip
        assert r.exit_code == 0, r.output
        out[name] = Path(r.stdout.strip().splitlines()[-1])
    return out


def test_ema_writes_a_checkpoint_per_decay_that_samples(runs, tmp_path: Path):
    run = runs["snap"]
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [
        "step-0000000.safetensors",
        "step-0000002.safetensors",
        "step-0000004.safetensors",
    ]
    r = invoke("ema", run, "--decay", "0", "--decay", "0.99")
    assert r.exit_code == 0, r.output
    paths = [Path(p) for p in r.stdout.split()]
    assert paths == [run / "checkpoints" / "ema-0.safetensors",
                     run / "checkpoints" / "ema-0.99.safetensors"]  # fmt: skip
    a, b = (load_checkpoint(p).section("ema") for p in paths)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    r = invoke("sample", paths[0], "-n", "4", "--steps", "2", "--out", tmp_path / "g")
    assert r.exit_code == 0, r.output
    assert list((tmp_path / "g").glob("*.png"))


@pytest.mark.parametrize(
    ("which", "decay", "message"),
    [
        ("plain", "0.9", "has no snapshots/"),
        ("snap", "1", "'--decay': 1 is not in [0, 1)"),
        ("snap", "-0.1", "'--decay'"),
        (None, "0.9", "no run at"),
    ],
)
def test_bad_calls_exit_2_in_one_line(runs, tmp_path: Path, which, decay, message):
    source = runs[which] if which else tmp_path / "nope"
    r = invoke("ema", source, "--decay", decay)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    if which:
        assert not (runs[which] / "checkpoints" / f"ema-{float(decay):g}.safetensors").exists()
