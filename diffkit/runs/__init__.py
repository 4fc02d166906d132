"""Run folders, checkpoints and metrics.

The names below load on first use (PEP 562), so that importing ``diffkit.runs.layout``,
which the CLI does at start-up, does not import torch through the checkpoint module.
"""

from __future__ import annotations

from diffkit.lazy import lazy_attributes

_WHERE = {
    "Checkpoint": "checkpoint", "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint",
    "resolve_checkpoint": "checkpoint", "save_checkpoint": "checkpoint", "RunDir": "layout",
    "find_runs": "layout", "write_json": "layout", "MetricsWriter": "metrics",
    "read_metrics": "metrics",
}  # fmt: skip

__all__ = sorted(_WHERE)

__getattr__ = lazy_attributes(__name__, _WHERE)
