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
    """All complete records; a torn last line (from a crash) is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_after(path: Path, step: int) -> None:
    """Drop records past ``step`` (used on resume, so the log matches the checkpoint)."""
    kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
