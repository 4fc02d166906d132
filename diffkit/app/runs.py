"""``diffkit runs``: the runs and pair sets under a folder, one table row each."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

UNREADABLE = "unreadable config.json"  # not JSON, or not a JSON object
MALFORMED = "malformed config.json"  # an object, but its name or train.epochs is wrong


COLUMNS = ["date", "method", "name", "steps", "epochs", "status", "last loss", "best", "path"]


def runs_table(root: Path) -> list[list[str]]:
    """A row of :data:`COLUMNS` per run and pair set under ``root``, oldest first: date,
    method, name, steps and epochs done (of planned), status (running, finished,
    stopped, ...), last loss, best score and path. This only reads files (no torch)."""
    from diffkit.runs import find_runs

    return [_pairs_row(run) if (run.path / "pairs.json").exists() else _row(run)
            for run in find_runs(root)]  # fmt: skip


def _row(run: Any) -> list[str]:
    """One table row; every field is read defensively, since a run may be half-written or
    hand-edited, and one bad run must not hide the others."""
    cfg, summary = _read_json(run.config), _read_json(run.summary) or {}
    records = _records(run.metrics)
    losses = [r for r in records if _number(r.get("loss")) is not None]
    last = losses[-1] if losses else {}
    loss = _first_number(summary.get("last_loss"), last.get("loss"))
    steps = _first_number(summary.get("steps"), last.get("step"))
    epochs = _first_number(summary.get("epochs"), last.get("epoch"))
    max_steps = _number(_get(cfg, "train", "max_steps"))
    planned_epochs = None if max_steps else _number(_get(cfg, "train", "epochs"))
    return [
        _date(run.path),
        run.method,
        str(_get(cfg, "name") or "?"),
        _of(steps, max_steps),
        _of(epochs, planned_epochs, decimals=1),
        _config_problem(cfg) or _status(run, summary),
        f"{loss:.4f}" if loss is not None else "-",
        _best(records, summary),
        _short(run.path),
    ]


def _pairs_row(run: Any) -> list[str]:
    """A pair set of `reflow make-pairs`: shards made of planned, complete or not."""
    cfg, manifest = _read_json(run.config) or {}, _read_json(run.path / "pairs.json") or {}
    n, size = _number(cfg.get("n")), _number(cfg.get("shard_size"))
    shards = manifest.get("shards") if isinstance(manifest.get("shards"), dict) else {}
    planned = -(-int(n) // int(size)) if n and size and size > 0 and math.isfinite(n) else None
    if manifest.get("complete") is True:
        status = "complete"
    else:
        status = "running" if _locked(run.path) else "incomplete (resume to finish)"
    s = _number(manifest.get("straightness"))
    return [
        _date(run.path), "pairs", str(cfg.get("name") or "?"),
        f"{len(shards)}/{planned if planned is not None else '?'} shards",
        "-", status, "-", f"S {s:.4f}" if s is not None else "-", _short(run.path),
    ]  # fmt: skip


def _status(run: Any, summary: dict) -> str:
    """running (a live process holds the run's lock), else how the last session ended."""
    if _locked(run.path):
        return "running"
    reason = summary.get("reason")
    if not reason:
        return "stopped" if run.last_checkpoint.exists() else "no checkpoint"
    return {"interrupted": "stopped (resumable)", "non_finite": "failed (NaN/inf)"}.get(
        str(reason), str(reason)
    )


def _locked(folder: Path) -> bool:
    from diffkit.runs.layout import is_locked

    return is_locked(folder)


def _best(records: list[dict[str, Any]], summary: dict) -> str:
    fids = [f for f in (_number(r.get("fid")) for r in records if r.get("event") == "eval")
            if f is not None and math.isfinite(f)]  # fmt: skip
    if fids:
        return f"FID {min(fids):.3g}"
    acc = _number(summary.get("test_accuracy"))
    return f"acc {100 * acc:.2f} %" if acc is not None else "-"


def _of(done: float | None, planned: float | None, decimals: int = 0) -> str:
    """``done/planned`` (``done`` alone when nothing is planned)."""

    def fmt(x: float) -> str:
        if not math.isfinite(x):
            return "?"
        return f"{x:.{decimals}f}".rstrip("0").rstrip(".") if decimals else str(int(x))

    text = fmt(done) if done is not None else "0"
    return f"{text}/{fmt(planned)}" if planned else text


def _date(path: Path) -> str:
    """When the run started: the folder's ``YYYYMMDD-HHMMSS-`` stamp, else its config's
    modification time."""
    from datetime import datetime

    try:
        return datetime.strptime(path.name[:15], "%Y%m%d-%H%M%S").strftime("%Y-%m-%d %H:%M")
    except ValueError:
        try:
            mtime = (path / "config.json").stat().st_mtime
        except OSError:
            return "?"
        return datetime.fromtimestamp(mtime).strftime("%Y-%m-%d %H:%M")


def _config_problem(cfg: dict | None) -> str | None:
    """Why config.json cannot describe its run, or None: the fields this table reads."""
    if cfg is None:
        return UNREADABLE
    train = cfg.get("train", {})
    if not isinstance(train, dict) or not isinstance(cfg.get("name", ""), str):
        return MALFORMED
    return MALFORMED if _number(train.get("epochs", 0)) is None else None


def _records(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records; none if the log cannot be read (the run is still shown)."""
    from diffkit.runs import read_metrics

    try:
        return read_metrics(path)
    except OSError:
        return []


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
