"""A bad ``--resume`` is one CheckpointError, raised before any file of the run changes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from diffkit.methods.generative import train_generative
from diffkit.runs import Checkpoint, CheckpointError, RunDir, load_checkpoint, save_checkpoint
from diffkit.runs.metrics import read_metrics
from tests.runs.util import settings, snapshot, tiny_cfg


def tamper(run: RunDir, edit: Callable[[Checkpoint], None]) -> None:
    ckpt = load_checkpoint(run.last_checkpoint)
    edit(ckpt)
    save_checkpoint(run.last_checkpoint, ckpt)


def _position(**change) -> Callable[[Checkpoint], None]:
    return lambda c: c.train_state["position"].update(change)


def _drop_position_key(c: Checkpoint) -> None:
    del c.train_state["position"]["batch"]


def _first(c: Checkpoint, prefix: str, suffix: str = "") -> str:
    return next(k for k in c.tensors if k.startswith(prefix) and k.endswith(suffix))


def _reshape(prefix: str, suffix: str = "") -> Callable[[Checkpoint], None]:
    def edit(c: Checkpoint) -> None:
        c.tensors[_first(c, prefix, suffix)] = torch.zeros(7)

    return edit


def _drop(prefix: str, suffix: str = "") -> Callable[[Checkpoint], None]:
    return lambda c: c.tensors.pop(_first(c, prefix, suffix))


def _reindex(c: Checkpoint) -> None:
    for name in ("step", "exp_avg", "exp_avg_sq"):
        c.tensors[f"optim.9999.{name}"] = c.tensors.pop(f"optim.0.{name}")


def _int_weights(c: Checkpoint) -> None:
    key = _first(c, "model.", ".weight")
    c.tensors[key] = c.tensors[key].long()


BAD_SCALER = {"scale": -1.0, "growth_factor": 2.0, "backoff_factor": 0.5,
              "growth_interval": 10, "_growth_tracker": 0}  # fmt: skip

TAMPERINGS = {
    "no training state": (lambda c: c.train_state.clear(), "holds no training state"),
    "position key missing": (_drop_position_key, "position.batch"),
    "string step": (_position(step="3"), "position.step"),
    "negative step": (_position(step=-1), "position.step"),
    "float epoch": (_position(epoch=1.5), "position.epoch"),
    "infinite elapsed": (_position(elapsed=float("inf")), "position.elapsed"),
    "batch past the epoch": (_position(batch=999), "position.batch 999"),
    "unknown position key": (_position(extra=1), "position.extra"),
    "world size": (lambda c: c.train_state.update(world_size=2), "trained with 2 process"),
    "bad scaler": (lambda c: c.train_state.update(scaler={"scale": "big"}), "scaler"),
    "negative scale": (lambda c: c.train_state.update(scaler=BAD_SCALER), "scaler.scale"),
    "optimizer shape": (_reshape("optim.", ".exp_avg"), "optimizer state does not match"),
    "optimizer index": (_reindex, "optim.9999"),
    "optimizer incomplete": (_drop("optim.", ".exp_avg_sq"), "is missing"),
    "ema shape": (_reshape("ema."), "ema weights do not match"),
    "ema missing": (_drop("ema."), "is missing"),
    "model extra": (lambda c: c.tensors.update({"model.bogus": torch.zeros(1)}), "model.bogus"),
    "model dtype": (_int_weights, "I64"),
}


@pytest.mark.parametrize("case", TAMPERINGS)
def test_tampered_resume_fails_before_writing(case: str, run: RunDir, data_dir: Path):
    edit, message = TAMPERINGS[case]
    tamper(run, edit)
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=message) as info:
        # more epochs: a config.json written too early would differ
        cfg = tiny_cfg(epochs=2)
        train_generative(cfg, settings(run.path.parent.parent, data_dir), resume=run)
    assert "\n" not in str(info.value)
    assert snapshot(run) == before


def test_valid_resume_continues_and_reports_its_checkpoint(run: RunDir, data_dir: Path):
    """The checks pass a genuine checkpoint (e.g. the optimiser indexing they assume)."""
    out, result = train_generative(
        tiny_cfg(max_steps=5, epochs=2), settings(run.path.parent.parent, data_dir), resume=run
    )
    assert out == run and result.reason == "finished" and result.step == 5
    assert result.checkpoint == run.last_checkpoint
    assert load_checkpoint(run.last_checkpoint).train_state["position"]["step"] == 5
    assert [r["step"] for r in read_metrics(run.metrics)] == [1, 2, 3, 4, 5]


def test_missing_checkpoint_is_one_line(run: RunDir, data_dir: Path):
    run.last_checkpoint.unlink()
    before = snapshot(run)
    with pytest.raises(CheckpointError, match=r"no checkpoints/last\.safetensors"):
        train_generative(tiny_cfg(), settings(run.path.parent.parent, data_dir), resume=run)
    assert snapshot(run) == before


def test_init_from_a_checkpoint_that_does_not_fit(tmp_path: Path, data_dir: Path):
    """Checked against a meta model: no tensor read, no run folder made."""
    other = tmp_path / "other.safetensors"
    save_checkpoint(other, Checkpoint({}, {"ema.x": torch.zeros(2)}))
    runs = tmp_path / "runs"
    with pytest.raises(CheckpointError, match=r"ema\.time_embed.* is missing"):
        train_generative(tiny_cfg(), settings(runs, data_dir), init_from=other)
    assert not (runs / "ddpm").exists()
