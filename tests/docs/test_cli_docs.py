"""docs/cli.md is generated from the Typer app and must match it."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REGENERATE = "typer diffkit.cli.app utils docs --name diffkit --output docs/cli.md"


def test_cli_reference_is_current():
    proc = subprocess.run(
        [sys.executable, "-m", "typer", "diffkit.cli.app", "utils", "docs", "--name", "diffkit"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    current = (REPO / "docs" / "cli.md").read_text()
    assert proc.stdout.strip() == current.strip(), f"docs/cli.md is stale; run: {REGENERATE}"
