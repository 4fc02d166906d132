"""Everything a resume needs, checked in one step before any file of the run is written.

A tampered or foreign ``last.safetensors`` must end in one CheckpointError line, never in a
traceback after config.json, metrics.jsonl and summary.json were already rewritten.
:func:`check_resume` checks the training state (position, process count, gradient scaler)
and every tensor of the ``model.``, ``ema.`` and ``optim.`` sections against the model. It
takes tensor specs, so it runs on a header and a meta model (:func:`load_resume`, before
allocating) as well as on loaded tensors and the real model (the loop, before applying).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import nn

from diffkit.config.model import ModelConfig
from diffkit.config.resolve import format_validation_error
from diffkit.config.run import TrainConfig
from diffkit.nn.build import meta_model
from diffkit.resources import check_memory
from diffkit.runs.checkpoint import (
    Checkpoint,
    CheckpointError,
    TensorSpec,
    check_specs,
    load_checkpoint,
    module_specs,
    read_checkpoint_header,
    specs_nbytes,
    tensor_spec,
)
from diffkit.training.optim import make_optimizer

ADAMW_STATE = ("step", "exp_avg", "exp_avg_sq")
"""The per-parameter state AdamW (amsgrad off) keeps; ``step`` is a float32 scalar."""


class _Strict(BaseModel):
    # strict: a string where an int belongs is tampering, not something to coerce
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Position(_Strict):
    """Where the loop stopped (the fields of the loop's ``_Position``)."""

    step: int = Field(ge=0)
    epoch: int = Field(ge=0)  # epochs completed
    batch: int = Field(ge=0)  # next batch within the current epoch
    elapsed: float = Field(ge=0, allow_inf_nan=False)
    images: int = Field(ge=0)


class ScalerState(_Strict):
    """``torch.amp.GradScaler.state_dict()`` of an fp16 run."""

    scale: float = Field(gt=0, allow_inf_nan=False)
    growth_factor: float = Field(gt=1, allow_inf_nan=False)
    backoff_factor: float = Field(gt=0, lt=1)
    growth_interval: int = Field(ge=1)
    growth_tracker: int = Field(ge=0, alias="_growth_tracker")


class TrainState(BaseModel):
    """``diffkit.train_state`` of a resumable checkpoint; other keys are ignored."""

    model_config = ConfigDict(strict=True, frozen=True)

    position: Position
    world_size: int = Field(1, ge=1)
    scaler: ScalerState | None = None  # None: no fp16 scaling

    @field_validator("scaler", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == {} else value  # a disabled scaler saves {}

    def scaler_dict(self) -> dict[str, Any]:
        return self.scaler.model_dump(by_alias=True) if self.scaler is not None else {}


def check_resume(
    tensors: Mapping[str, TensorSpec],
    train_state: Mapping[str, Any],
    model: nn.Module,
    cfg: TrainConfig,
    *,
    world: int,
    batches: int,
    source: object,
) -> TrainState:
    """The validated training state, if a run of ``model`` under ``cfg`` on ``world``
    processes with ``batches`` batches an epoch can continue from it; else CheckpointError
    naming the first problem. ``model`` may live on the meta device."""
    state = _train_state(train_state, source)
    if state.world_size != world:
        raise CheckpointError(
            f"{source} was trained with {state.world_size} process(es); resume it with the "
            f"same number (got {world})"
        )
    if state.position.batch > batches:
        raise CheckpointError(
            f"cannot resume from {source}: position.batch {state.position.batch} is past the "
            f"{batches} batches of an epoch"
        )
    expected = module_specs(model)
    for prefix in ("model", "ema"):
        check_specs(expected, _section(tensors, prefix), f"cannot resume from {source}: "
                    f"{prefix} weights do not match the model", f"{prefix}.")  # fmt: skip
    _check_optimizer(_section(tensors, "optim"), model, cfg, source)
    return state


def _train_state(train_state: Mapping[str, Any], source: object) -> TrainState:
    if "position" not in train_state:
        raise CheckpointError(f"{source} holds no training state to resume")
    try:
        return TrainState.model_validate(dict(train_state))
    except ValidationError as exc:
        msg = format_validation_error(exc)
        raise CheckpointError(f"cannot resume from {source}: training state {msg}") from None


def _section(tensors: Mapping[str, TensorSpec], prefix: str) -> dict[str, TensorSpec]:
    p = prefix + "."
    return {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}


def _check_optimizer(
    found: Mapping[str, TensorSpec], model: nn.Module, cfg: TrainConfig, source: object
) -> None:
    """``optim.<i>.<name>``: i indexes the optimiser's parameters in group order (as its
    ``state_dict`` does); each i present holds all of :data:`ADAMW_STATE`, shaped like its
    parameter. A parameter that never had a gradient has no state, so may be absent."""
    params = [p for group in make_optimizer(model, cfg).param_groups for p in group["params"]]
    expected: dict[str, TensorSpec] = {}
    for i, p in enumerate(params):
        expected[f"{i}.step"] = ("F32", ())
        expected[f"{i}.exp_avg"] = expected[f"{i}.exp_avg_sq"] = tensor_spec(p)
    present = {key.split(".", 1)[0] for key in found}
    wanted = {k: v for k, v in expected.items() if k.split(".", 1)[0] in present}
    what = f"cannot resume from {source}: optimizer state does not match the model"
    check_specs(wanted, found, what, "optim.")


def load_resume(
    path: Path, model_cfg: ModelConfig, cfg: TrainConfig, *, world: int, batches: int
) -> tuple[Checkpoint, TrainState]:
    """The checkpoint to resume from and its validated state. The header is checked
    against a meta model first, so a tampered or oversized file is refused before a tensor
    is read; only then are the tensors loaded."""
    header = read_checkpoint_header(path)
    model = meta_model(model_cfg)
    state = check_resume(header.tensors, header.train_state, model, cfg, world=world,
                         batches=batches, source=path)  # fmt: skip
    check_memory(specs_nbytes(header.tensors.values()), f"loading {path}")
    return load_checkpoint(path), state
