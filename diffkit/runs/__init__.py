"""Run folders, checkpoints and metrics."""

from diffkit.runs.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from diffkit.runs.layout import RunDir, find_runs, write_json
from diffkit.runs.metrics import MetricsWriter, read_metrics

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "MetricsWriter",
    "RunDir",
    "find_runs",
    "load_checkpoint",
    "read_metrics",
    "resolve_checkpoint",
    "save_checkpoint",
    "write_json",
]
