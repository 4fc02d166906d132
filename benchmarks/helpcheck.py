"""Every command's --help, at 80 and 200 columns, in one file: to show that a refactor of
the command layer kept the help text byte for byte.

    python benchmarks/helpcheck.py BEFORE.txt      # on the old commit
    python benchmarks/helpcheck.py AFTER.txt       # on the new one
    diff BEFORE.txt AFTER.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from diffkit.cli.app import app


def commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, TyperGroup):
            yield from commands(command, (*path, name))


def main() -> None:
    root = typer.main.get_command(app)
    out = []
    for path in [(), *commands(root)]:
        for width in ("80", "200"):
            result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": width})
            out.append(f"=== {' '.join(path)} {width}\n{result.output}")
    Path(sys.argv[1]).write_text("\n".join(out))


if __name__ == "__main__":
    main()
