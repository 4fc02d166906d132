"""Few-step students train like any run: an interrupted one resumes exactly, its target
network (the EMA) and ECT's stage schedule included."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from diffkit.app.distill import DistillRequest, plan_distill
from diffkit.config.settings import Settings
from diffkit.methods.generative import train_generative
from diffkit.runs.checkpoint import load_checkpoint
from tests.cli.util import TINY, invoke, last_line


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("teacher")
    return last_line(invoke("train", "ddpm", *TINY, "--data-dir", data_dir, "--runs-dir",
                            root / "runs"))  # fmt: skip


def _train(plan, settings: Settings, resume=None, stop_at: int | None = None):
    sent: list[int] = []

    def interrupt(event) -> None:
        if stop_at is not None and event.kind == "log" and event.step >= stop_at and not sent:
            sent.append(event.step)
            os.kill(os.getpid(), signal.SIGINT)

    return train_generative(plan.cfg, settings, resume=resume, codec=plan.codec,
                            init_from=plan.init_from, on_event=interrupt)  # fmt: skip


@pytest.mark.parametrize("method", ["cd", "ect"])
def test_an_interrupted_student_resumes_exactly(teacher: Path, tmp_path: Path, data_dir: Path,
                                                method: str):  # fmt: skip
    overrides = {"train.max_steps": 6, "train.batch_size": 16, "train.log_every": 1,
                 "train.sample_every": 0, "distill.ect_stage_steps": 2,
                 "distill.teacher_steps": 8}  # fmt: skip
    settings = Settings(runs_dir=tmp_path / "runs", data_dir=data_dir, download=False,
                        device="cpu")  # fmt: skip
    request = DistillRequest(teacher, method=method, overrides=overrides)  # type: ignore[arg-type]
    run, result = _train(plan_distill(request, "cpu"), settings, stop_at=2)
    assert result.reason == "interrupted" and result.step < 6
    resumed = plan_distill(DistillRequest(resume=run.path), "cpu")
    run, result = _train(resumed, settings, resume=resumed.run)
    assert result.step == 6
    whole_settings = Settings(runs_dir=tmp_path / "whole", data_dir=data_dir, download=False,
                              device="cpu")  # fmt: skip
    whole, _ = _train(plan_distill(request, "cpu"), whole_settings)
    a = load_checkpoint(run.last_checkpoint).section("ema")
    b = load_checkpoint(whole.last_checkpoint).section("ema")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the student moved away from its teacher
    t = load_checkpoint(teacher / "checkpoints" / "last.safetensors").section("ema")
    assert any(not torch.equal(a[k], t[k]) for k in a)
