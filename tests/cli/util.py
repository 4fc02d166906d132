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


def file_tree(root: Path, folders: bool = False) -> dict[str, str]:
    """Every file under ``root`` by its sha256 (``folders``: and every folder, as ""), to
    show that a refused command changed nothing, not even by an empty folder."""
    import hashlib

    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
        if folders or p.is_file()
    }


def refused(line: str, world: dict, monkeypatch, folders: bool = False) -> str:
    """Run the hostile invocation ``line`` (``{name}`` fields from ``world``; leading
    ``NAME=VALUE`` words set the environment, as in a shell) with the world's data and runs
    folders, and check the refusal: exit 2, exactly one ``error:`` line on stderr, nothing on
    stdout, the tree under ``world["root"]`` unchanged. Returns that line."""
    monkeypatch.setenv("DIFFKIT_DATA_DIR", str(world["data"]))
    monkeypatch.setenv("DIFFKIT_RUNS_DIR", str(world.get("runs", world["root"] / "runs")))
    args = [a.format(**world) for a in line.split()]
    while "=" in args[0]:
        name, value = args.pop(0).split("=", 1)
        monkeypatch.setenv(name, value)
    before = file_tree(world["root"], folders)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    assert file_tree(world["root"], folders) == before
    return lines[0]
