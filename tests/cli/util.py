"""Helpers shared by the CLI tests: run the app in-process and read its printed path."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from diffkit.cli.app import app

runner = CliRunner()
TINY = ("--preset", "tiny", "--limit-data", "64", "--batch-size", "16", "--max-steps", "3",
        "--sample-every", "0")  # fmt: skip


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def last_line(result) -> Path:
    """The last stdout line (commands print their output folder there); exit 0 asserted."""
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])
