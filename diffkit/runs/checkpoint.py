"""Checkpoints: safetensors only, with the run config in the file's metadata.

A checkpoint holds tensors under prefixes ``model.``, ``ema.`` and (for training state)
``optim.`` and ``rng.``; metadata holds ``diffkit.config`` (the run config JSON),
``diffkit.format`` and, when present, ``diffkit.train_state`` (JSON). Nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from diffkit.errors import CheckpointError
from diffkit.resources import check_memory
from diffkit.runs.layout import RunDir, atomic_write_bytes

FORMAT = "diffkit-checkpoint-1"

TensorSpec = tuple[str, tuple[int, ...]]
"""(safetensors dtype name such as ``F32``, shape): what a file header says of a tensor."""

_DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip
_ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1}  # fmt: skip
_FLOATS = frozenset({"F64", "F32", "F16", "BF16"})


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


def read_header(path: Path) -> tuple[dict[str, str], dict[str, TensorSpec]]:
    """(metadata, {name: (dtype, shape)}) of any safetensors file, without reading a tensor:
    only the JSON header is parsed (safetensors checks that it covers the file exactly)."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            specs = {}
            for name in f.keys():  # noqa: SIM118 - safe_open is not iterable
                tensor = f.get_slice(name)
                specs[name] = (tensor.get_dtype(), tuple(tensor.get_shape()))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    return meta, specs


@dataclass
class CheckpointHeader:
    """A checkpoint's config, training state and tensor specs; no tensor loaded."""

    path: Path
    config: dict[str, Any]
    train_state: dict[str, Any]
    tensors: dict[str, TensorSpec]

    def section(self, prefix: str) -> dict[str, TensorSpec]:
        """Specs under ``prefix.`` with the prefix removed."""
        p = prefix + "."
        return {k[len(p) :]: v for k, v in self.tensors.items() if k.startswith(p)}


def read_checkpoint_header(path: Path) -> CheckpointHeader:
    """The header of a diffkit checkpoint: what :func:`load_checkpoint` returns, minus the
    tensors, so a file can be checked against the model it describes before allocating."""
    meta, specs = read_header(path)
    if meta.get("diffkit.format") != FORMAT:
        raise CheckpointError(f"{path} is not a diffkit checkpoint")
    config, state = _parse_json(meta, "diffkit.config", path), {}
    if "diffkit.train_state" in meta:
        state = _parse_json(meta, "diffkit.train_state", path)
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise CheckpointError(f"{path}: config or training state is not a JSON object")
    return CheckpointHeader(Path(path), config, state, specs)


def _parse_json(meta: dict[str, str], key: str, path: Path) -> Any:
    try:
        return json.loads(meta[key])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: bad {key} ({exc})") from None


def tensor_spec(t: torch.Tensor) -> TensorSpec:
    """The spec of a tensor (meta tensors too): what :func:`read_header` would report."""
    return _DTYPE_NAMES.get(t.dtype, str(t.dtype)), tuple(t.shape)


def module_specs(module: nn.Module) -> dict[str, TensorSpec]:
    """The specs of a module's state dict; built on the meta device it costs no memory."""
    return {k: tensor_spec(v) for k, v in module.state_dict().items()}


def specs_nbytes(specs: Iterable[TensorSpec]) -> int:
    """Bytes the tensors of ``specs`` take once loaded."""
    return sum(math.prod(shape) * _ITEM_BYTES.get(dtype, 8) for dtype, shape in specs)


def _fits(want: TensorSpec, got: TensorSpec) -> bool:
    """Same shape, and a dtype ``load_state_dict`` copies losslessly enough: the same, or
    one floating type for another."""
    same_kind = want[0] == got[0] or (want[0] in _FLOATS and got[0] in _FLOATS)
    return want[1] == got[1] and same_kind


def check_specs(
    expected: Mapping[str, TensorSpec], found: Mapping[str, TensorSpec], what: str, prefix: str = ""
) -> None:
    """CheckpointError ``what: <first offending tensor>`` unless ``found`` holds exactly the
    tensors of ``expected`` with their shapes (``prefix`` only names them in the message)."""
    for key, want in expected.items():
        got = found.get(key)
        if got is None:
            raise CheckpointError(f"{what}: {prefix}{key} is missing")
        if not _fits(want, got):
            raise CheckpointError(
                f"{what}: {prefix}{key} is {got[0]} {list(got[1])}, the model needs "
                f"{want[0]} {list(want[1])}"
            )
    extra = next((k for k in found if k not in expected), None)
    if extra is not None:
        raise CheckpointError(f"{what}: unexpected tensor {prefix}{extra}")


MISMATCH = "weights do not match the model its config describes"


def check_state(
    module: nn.Module,
    found: Mapping[str, TensorSpec],
    source: object,
    prefix: str = "",
    mismatch: str = MISMATCH,
) -> None:
    """Before building a model for real: its (meta) ``module`` must take exactly the
    tensors ``found`` in the header of ``source``, and the model plus those tensors must
    fit in memory; CheckpointError or ResourceError otherwise."""
    expected = module_specs(module)
    check_specs(expected, found, f"{source}: {mismatch}", prefix)
    n = sum(p.numel() for p in module.parameters())
    need = specs_nbytes(expected.values()) + specs_nbytes(found.values())
    check_memory(need, f"loading {source} ({type(module).__name__}, {n:,} parameters)")


def load_state(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], source: object, mismatch: str = MISMATCH
) -> None:
    """Strict ``module.load_state_dict(tensors)``; missing, extra or mis-shaped tensors
    -> CheckpointError ``source: mismatch``."""
    try:
        module.load_state_dict(tensors)
    except RuntimeError:
        raise CheckpointError(f"{source}: {mismatch}") from None


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


NUMBERED = ("epoch-*.safetensors", "step-*.safetensors")
"""The numbered checkpoints of a run folder, kept beside ``last``: one per epoch and one
every ``train.checkpoint_every_steps`` steps."""


def numbered_checkpoints(run: RunDir) -> list[Path]:
    """The run's epoch and step checkpoints, oldest first: by the training step each was
    written at (its header's position), a file without one first."""
    files = [p for pattern in NUMBERED for p in run.checkpoints.glob(pattern)]
    return sorted(files, key=_written_at)


def _written_at(path: Path) -> tuple[int, str]:
    try:
        step = int(read_checkpoint_header(path).train_state["position"]["step"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        step = -1
    return step, path.name


def keep_numbered(run: RunDir, source: Path, target: Path, keep: int) -> None:
    """Add ``target``, a copy of the checkpoint ``source`` (a hard link where the file
    system has them: ``source`` is only ever replaced by a rename, never rewritten, so the
    link keeps today's bytes), then delete all but the newest ``keep`` numbered ones."""
    tmp = target.with_name(f".{target.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # no hard links here (or across devices): a real copy, as atomically
        atomic_write_bytes(target, source.read_bytes())
    else:
        os.replace(tmp, target)
    prune_checkpoints(run, keep)


def prune_checkpoints(run: RunDir, keep: int) -> None:
    """Delete all but the newest ``keep`` numbered checkpoints (``last`` and ``best`` are
    never numbered, so never deleted)."""
    files = numbered_checkpoints(run)
    for old in files[: max(0, len(files) - keep)]:
        old.unlink(missing_ok=True)
