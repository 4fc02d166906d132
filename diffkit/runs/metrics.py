"""metrics.jsonl: one JSON object per logged step, appended and flushed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffkit.runs.layout import atomic_write_bytes


class MetricsWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._file.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All complete records (JSON objects); a torn last line (from a crash) or any other
    line that is not one is skipped. An unreadable file raises OSError: callers that
    rewrite the log must not mistake it for an empty one."""
    if not path.is_file():
        return []
    out = []
    # bytes that are not UTF-8 spoil only their own line, which then fails to parse
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def truncate_after(path: Path, step: int) -> None:
    """Drop records past ``step`` (used on resume, so the log matches the checkpoint)."""
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
