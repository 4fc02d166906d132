"""Parser errors (Typer/click) are one ``error:`` line naming the option, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.util import invoke


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["train", "ddpm", "--epochs", "abc"], ["'--epochs'", "integer"]),
        (["train", "ddpm", "--lr", "abc"], ["'--lr'", "number"]),
        (["train", "ddpm", "--device", "tpu"], ["'--device'", "'auto', 'cpu', 'cuda'"]),
        (
            ["train", "ddpm", "--preset", "huge"],
            ["'--preset'", "'tiny', 'small', 'small-v1', 'default'"],
        ),
        (["train", "ddpm", "--foo"], ["no such option: --foo"]),
        (["train", "nope"], ["no such command 'nope'"]),
        (["sample"], ["missing argument 'source'"]),
        (["sample", "x", "--sampler", "foo"], ["'--sampler'", "'ddpm', 'ddim'"]),
        (["sample", "x", "--cache-interval", "abc"], ["'--cache-interval'"]),
        (["sample", "x", "--cache-interval", "0"], ["'--cache-interval'", "1"]),
        (["sample", "x", "--seed", str(2**70)], ["'--seed'"]),
        (["sample", "x", "--seed", "-1"], ["'--seed'"]),
        (["train", "ddpm", "--seed", str(2**31)], ["'--seed'", "0..2147483647"]),
        (["reflow", "make-pairs", "x", "--seed", str(2**31)], ["'--seed'", "0..2147483647"]),
        (["sample", "x", "--rtol", "1e-30"], ["'--rtol'"]),
        (["eval", "x", "--num-images"], ["'--num-images'", "requires an argument"]),
        (["reflow", "make-pairs", "x", "--solver", "ddim"], ["'--solver'", "'euler'"]),
    ],
)
def test_usage_error_is_one_line_naming_the_option(args, names):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert name.lower() in lines[0].lower(), lines[0]
    assert "Value error" not in lines[0] and "╭" not in result.output
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["--help"], ["train", "ddpm", "--help"], ["sample", "--help"]])
def test_help_still_works(args):
    result = invoke(*args)
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_no_arguments_shows_the_help():
    result = invoke("train")
    assert result.exit_code == 2 and "Usage" in result.output and "error" not in result.output


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("diffkit ")


def test_config_value_errors_lose_pydantic_prefix(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"train": {"lr": -1}}')
    result = invoke("train", "ddpm", "--preset", "tiny", "--config", cfg)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("error: invalid train.lr") and "Value error" not in line


def test_norm_groups_that_miss_a_decoder_width_is_one_line_and_writes_no_run(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nnorm_groups = 64\n")  # divides 32 and 64, not 64 + 32 = 96
    runs = tmp_path / "runs"
    result = invoke("train", "ddpm", "--preset", "small", "--config", cfg, "--runs-dir", runs)
    assert result.exit_code == 2
    expected = "error: invalid model: norm_groups=64 does not divide 96 channels"
    assert result.stderr.strip() == expected
    assert not runs.exists()


def test_threads_are_applied_at_the_cli_edge_only(monkeypatch):
    """DIFFKIT_THREADS is set once by the CLI's settings; no library function sets it."""
    import torch

    from diffkit.cli.options import machine_settings

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setenv("DIFFKIT_THREADS", "3")
    assert machine_settings(None, None, None).threads == 3 and calls == [3]
    library = Path(__file__).resolve().parents[2] / "diffkit"
    offenders = [p for p in library.rglob("*.py") if "set_num_threads" in p.read_text()
                 and p.name != "options.py"]  # fmt: skip
    assert offenders == []
