"""Checkpoints: safetensors only, with the run config in the file's metadata.

A checkpoint holds tensors under prefixes ``model.``, ``ema.`` and (for training state)
``optim.`` and ``rng.``; metadata holds ``diffkit.config`` (the run config JSON),
``diffkit.format`` and, when present, ``diffkit.train_state`` (JSON). Nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from diffkit.runs.layout import RunDir, atomic_write_bytes

FORMAT = "diffkit-checkpoint-1"


class CheckpointError(RuntimeError):
    """A missing, corrupt or foreign checkpoint."""


@dataclass
class Checkpoint:
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    train_state: dict[str, Any] = field(default_factory=dict)

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        """Tensors under ``prefix.`` with the prefix removed."""
        p = prefix + "."
        return {k[len(p) :]: v for k, v in self.tensors.items() if k.startswith(p)}


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Serialise atomically (temp file + rename): a crash leaves the old file intact."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in ckpt.tensors.items()}
    meta = {"diffkit.format": FORMAT, "diffkit.config": json.dumps(ckpt.config)}
    if ckpt.train_state:
        meta["diffkit.train_state"] = json.dumps(ckpt.train_state)
    atomic_write_bytes(path, save(tensors, metadata=meta))


def load_checkpoint(path: Path, prefixes: tuple[str, ...] | None = None) -> Checkpoint:
    """Read a checkpoint; ``prefixes`` limits which tensor sections are loaded."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("diffkit.format") != FORMAT:
                raise CheckpointError(f"{path} is not a diffkit checkpoint")
            names = f.keys()  # safe_open is not iterable itself
            keys = [k for k in names if prefixes is None or k.split(".", 1)[0] in prefixes]
            tensors = {k: f.get_tensor(k) for k in keys}
        config = json.loads(meta["diffkit.config"])
        state = json.loads(meta.get("diffkit.train_state", "{}"))
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    return Checkpoint(config, tensors, state)


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or a run folder (its ``checkpoints/last.safetensors``)."""
    path = Path(path)
    if path.is_dir():
        ckpt = RunDir(path).last_checkpoint
        if not ckpt.is_file():
            raise CheckpointError(f"{path} has no checkpoints/last.safetensors")
        return ckpt
    if not path.exists():
        raise CheckpointError(f"no run or checkpoint at {path}")
    return path


def prune_epoch_checkpoints(run: RunDir, keep_last_n: int) -> None:
    """Delete all but the newest ``keep_last_n`` ``epoch-NNNN`` files."""
    files = sorted(run.checkpoints.glob("epoch-*.safetensors"))
    for old in files[: max(0, len(files) - keep_last_n)]:
        old.unlink(missing_ok=True)
