"""``diffkit runs``: list run folders as a table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from diffkit.cli import console
from diffkit.cli.errors import handle_errors
from diffkit.cli.options import RunsDir, machine_settings

UNREADABLE = "unreadable config.json"  # not JSON, or not a JSON object
MALFORMED = "malformed config.json"  # an object, but its name or train.epochs is wrong


@handle_errors
def runs(runs_dir: RunsDir = None) -> None:
    """List runs: method, name, epochs, last loss, status and path."""
    from rich.markup import escape

    from diffkit.runs import find_runs

    root = machine_settings(None, runs_dir, None).runs_dir
    rows = [_row(run) for run in find_runs(root)]
    if not rows:
        console.info(f"no runs under {root}")
        return
    console.table(
        f"runs in {escape(str(root))}",
        ["method", "name", "epochs", "last loss", "status", "path"],
        rows,
    )


def _row(run: Any) -> list[str]:
    """One table row; every field is read defensively, since a run may be half-written or
    hand-edited, and one bad run must not hide the others."""
    cfg, summary = _read_json(run.config), _read_json(run.summary) or {}
    last = _last_loss_record(run.metrics)
    loss = _first_number(summary.get("last_loss"), last.get("loss"))
    done = _first_number(summary.get("epochs"), last.get("epoch"))
    planned = _number(_get(cfg, "train", "epochs"))
    return [
        run.method,
        str(_get(cfg, "name") or "?"),
        f"{_count(done) if done is not None else 0}/{_count(planned) if planned else '?'}",
        f"{loss:.4f}" if loss is not None else "-",
        _config_problem(cfg) or str(summary.get("reason") or "running or stopped"),
        _short(run.path),
    ]


def _config_problem(cfg: dict | None) -> str | None:
    """Why config.json cannot describe its run, or None: the fields this table reads."""
    if cfg is None:
        return UNREADABLE
    train = cfg.get("train", {})
    if not isinstance(train, dict) or not isinstance(cfg.get("name", ""), str):
        return MALFORMED
    return MALFORMED if _number(train.get("epochs", 0)) is None else None


def _last_loss_record(path: Path) -> dict[str, Any]:
    """The last training record (one with a numeric loss; eval records have none)."""
    from diffkit.runs import read_metrics

    try:
        records = read_metrics(path)
    except OSError:  # unreadable log: show the run without it
        return {}
    losses = [r for r in records if _number(r.get("loss")) is not None]
    return losses[-1] if losses else {}


def _get(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...``, or None where a level is missing or not a JSON object."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _number(value: Any) -> float | None:
    """A finite-or-not JSON number as float; None for anything else (strings, bools, ...)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _first_number(*values: Any) -> float | None:
    return next((x for x in map(_number, values) if x is not None), None)


def _count(value: float) -> str:
    return str(int(value)) if math.isfinite(value) else "?"


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; None if it is missing, unreadable or not an object (a
    run being written, or a damaged file)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # ValueError covers bad JSON and bad UTF-8
        return None
    return data if isinstance(data, dict) else None
