"""One writer per run folder: the lock is held while training writes, a second resume of
the same run fails touching nothing, and what a killed run left behind is taken over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from diffkit.config.resolve import resolve_run_config
from diffkit.config.run import ClassifierRunConfig, FlowRunConfig, PairsConfig, VAERunConfig
from diffkit.methods.classifier import train_classifier
from diffkit.methods.flow import FlowPipeline
from diffkit.methods.generative import train_generative
from diffkit.methods.load import pipeline_for
from diffkit.methods.reflow import PairsError, make_pairs
from diffkit.methods.vae import train_vae
from diffkit.nn import build_model
from diffkit.runs import RunDir, load_checkpoint
from diffkit.runs.layout import RunLock, RunLockedError
from tests.runs.util import locked, settings, snapshot, tiny_cfg


class Stop(Exception):
    """Ends a training call early, from inside a callback."""


def test_second_resume_of_a_locked_run_touches_nothing(run: RunDir, data_dir: Path):
    before = snapshot(run)
    checkpoint = run.last_checkpoint.read_bytes()
    with RunLock(run.path), pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        train_generative(tiny_cfg(epochs=2), settings(run.path.parent.parent, data_dir),
                         resume=run)  # fmt: skip
    assert snapshot(run) == before and run.last_checkpoint.read_bytes() == checkpoint


def test_resume_takes_over_a_dead_lock_and_drops_stale_temporaries(run: RunDir, data_dir: Path):
    (run.path / RunLock.NAME).write_text("999999\n")  # a killed run's pid, no flock held
    stale = [run.checkpoints / ".epoch-0001.safetensors.abc.tmp", run.path / ".config.json.x.tmp"]
    for tmp in stale:
        tmp.write_bytes(b"half a file")
    during: list[bool] = []

    def on_event(event) -> None:
        if event.kind == "start":
            during.append(locked(run.path))

    _, result = train_generative(tiny_cfg(max_steps=4), settings(run.path.parent.parent, data_dir),
                                 resume=run, on_event=on_event)  # fmt: skip
    assert result.step == 4 and during == [True]
    assert not any(tmp.exists() for tmp in stale)
    assert not locked(run.path), "released when training ends"
    assert load_checkpoint(run.last_checkpoint).train_state["position"]["step"] == 4


def test_vae_and_classifier_runs_are_locked_and_released_on_failure(tmp_path, data_dir: Path):
    flags = {"data.limit": 32, "train.batch_size": 16, "train.epochs": 1, "name": "lock"}
    seen: list[Path] = []

    def check(r: RunDir) -> None:
        assert locked(r.path)
        seen.append(r.path)
        raise Stop

    with pytest.raises(Stop):
        train_vae(resolve_run_config(VAERunConfig, flags, environ={}),
                  settings(tmp_path, data_dir), on_run_dir=check)  # fmt: skip
    with pytest.raises(Stop):
        train_classifier(resolve_run_config(ClassifierRunConfig, flags, environ={}),
                         settings(tmp_path, data_dir), on_run_dir=check)  # fmt: skip
    assert len(seen) == 2 and not any(locked(p) for p in seen)


@pytest.fixture
def tiny_flow() -> FlowPipeline:
    torch.manual_seed(0)
    cfg = resolve_run_config(FlowRunConfig, {"preset": "tiny"}, environ={})
    return pipeline_for(cfg, build_model(cfg.model).eval(), torch.device("cpu"))


def pairs_cfg() -> PairsConfig:
    return PairsConfig(source="x", source_sha256="0" * 64, n=6, steps=1, shard_size=3,
                       batch_size=3)  # fmt: skip


def test_pair_sets_are_locked(tiny_flow: FlowPipeline, tmp_path: Path):
    folder = tmp_path / "pairs"
    during: list[bool] = []
    make_pairs(pairs_cfg(), tiny_flow, folder, on_shard=lambda p: during.append(locked(folder)))
    assert during == [True, True] and not locked(folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != RunLock.NAME}
    with RunLock(folder), pytest.raises(RunLockedError):
        make_pairs(pairs_cfg(), tiny_flow, folder, resume=True)
    with pytest.raises(PairsError, match="already holds a pair set"):
        make_pairs(pairs_cfg(), tiny_flow, folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != RunLock.NAME} == files
    stale = folder / ".shard-00001.safetensors.abc.tmp"
    stale.write_bytes(b"half a shard")
    make_pairs(pairs_cfg(), tiny_flow, folder, resume=True)
    assert not stale.exists()


def test_lock_file_is_gone_after_release_and_held_locks_refuse(tmp_path):
    from diffkit.runs.layout import RunLock, RunLockedError

    first = RunLock(tmp_path).acquire()
    assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / ".lock").exists()
    with RunLock(tmp_path):  # free again
        assert (tmp_path / ".lock").exists()
    assert not any(tmp_path.iterdir())
