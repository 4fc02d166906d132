"""``diffkit runs``: list run folders as a table."""

from __future__ import annotations

import json
from pathlib import Path

from diffkit.cli import console
from diffkit.cli.errors import handle_errors
from diffkit.cli.options import RunsDir, machine_settings


@handle_errors
def runs(runs_dir: RunsDir = None) -> None:
    """List runs: method, name, epochs, last loss, status and path."""
    from diffkit.runs import find_runs, read_metrics

    root = machine_settings(None, runs_dir, None).runs_dir
    rows = []
    for run in find_runs(root):
        cfg, summary = _read_json(run.config), _read_json(run.summary)
        records = [r for r in read_metrics(run.metrics) if "loss" in r]  # not eval records
        last = records[-1] if records else {}
        loss = summary.get("last_loss", last.get("loss"))
        epochs = summary.get("epochs", int(last.get("epoch", 0)))
        rows.append(
            [
                run.method,
                cfg.get("name", "?"),
                f"{epochs}/{cfg.get('train', {}).get('epochs', '?')}",
                f"{loss:.4f}" if isinstance(loss, float) else "-",
                summary.get("reason", "running or stopped"),
                _short(run.path),
            ]
        )
    if not rows:
        console.info(f"no runs under {root}")
        return
    console.table(
        f"runs in {root}", ["method", "name", "epochs", "last loss", "status", "path"], rows
    )


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``; {} if it is missing or unreadable (a run being written)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
