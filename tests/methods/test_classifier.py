"""train_classifier: an interrupted run writes no classifier, and its resume finishes it
exactly as an uninterrupted run would."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from diffkit.config.resolve import resolve_run_config
from diffkit.config.run import ClassifierRunConfig
from diffkit.config.settings import Settings
from diffkit.eval.features import CLASSIFIER_FILE
from diffkit.methods.classifier import train_classifier

FLAGS = {"data.limit": 64, "train.batch_size": 16, "train.epochs": 2, "train.log_every": 1,
         "train.warmup_steps": 2, "name": "tiny"}  # fmt: skip


def test_interrupted_classifier_resumes_exactly(tmp_path: Path, data_dir: Path):
    cfg = resolve_run_config(ClassifierRunConfig, FLAGS, environ={})
    settings = Settings(runs_dir=tmp_path / "a", data_dir=data_dir, download=False, device="cpu")

    def ctrl_c_at_step_3(event) -> None:
        if event.kind == "log" and event.step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    part = train_classifier(cfg, settings, on_event=ctrl_c_at_step_3)
    assert part.train.reason == "interrupted" and part.train.step == 3
    assert part.digest is None and not (part.run.path / CLASSIFIER_FILE).exists()
    assert part.run.last_checkpoint.is_file()

    resumed = train_classifier(cfg, settings, resume=part.run)
    assert resumed.run == part.run and resumed.train.step == 8
    whole = train_classifier(cfg, settings.model_copy(update={"runs_dir": tmp_path / "b"}))
    assert resumed.digest == whole.digest is not None
    assert resumed.test_accuracy == whole.test_accuracy
