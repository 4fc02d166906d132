"""What every training method does around the shared loop."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffkit.config.run import DataConfig
from diffkit.config.settings import Settings
from diffkit.data.registry import ImageData, load_dataset
from diffkit.errors import NothingToDo
from diffkit.nn.build import count_parameters
from diffkit.runs.checkpoint import Checkpoint, CheckpointError
from diffkit.runs.layout import RunDir, RunLock, clean_temporaries, write_json
from diffkit.runs.metrics import read_metrics, truncate_after
from diffkit.runs.plots import plot_loss
from diffkit.training import TrainEvent, TrainResult
from diffkit.training.hardware import precision_name
from diffkit.training.loop import run_length
from diffkit.training.resume import load_resume


def load_splits(
    data: DataConfig,
    settings: Settings,
    on_event: Callable[[TrainEvent], None] = lambda e: None,
) -> tuple[ImageData, ImageData]:
    """(train split as configured, the whole test split): ``data.limit`` cuts training only."""
    train = load_dataset(data, settings.data_dir, "train", download=settings.download)
    report_skipped(train, data.dataset, on_event)
    test_cfg = data.model_copy(update={"limit": None})
    return train, load_dataset(test_cfg, settings.data_dir, "test", download=settings.download)


def training_evaluator(
    data: DataConfig,
    settings: Settings,
    device: torch.device,
    classifier: Path | None,
    on_event: Callable[[TrainEvent], None],
) -> tuple[Any, dict[str, Any]]:
    """The Evaluator of an in-training evaluation (KID on 20 subsets, to keep it quick)
    with ``classifier``, else the most accurate qualified one for the dataset (an unqualified
    one alone is a ConfigError now, before training); a ``features`` event says which it is.
    Returns it and the fields every eval record carries to name that network."""
    from diffkit.eval.evaluate import Evaluator
    from diffkit.eval.features import load_extractor

    extractor = load_extractor(
        "classifier", data.dataset, settings.runs_dir, device, classifier=classifier
    )
    evaluator = Evaluator(data.dataset, extractor, settings, data=data, kid_subsets=20)
    about = extractor.about()
    on_event(TrainEvent("features", 0, 0, about))
    fields = {"feature_net": about["name"], "feature_sha256": extractor.digest[:16],
              "feature_accuracy": about["test_accuracy"]}  # fmt: skip
    return evaluator, fields


def report_skipped(data: ImageData, dataset: str, on_event: Callable[[TrainEvent], None]) -> None:
    """A ``data`` event when a folder dataset left out unreadable or oversized files (the
    library never prints; the CLI says how many, and which classes were left with none)."""
    if data.skipped:
        on_event(TrainEvent("data", 0, 0, {"dataset": dataset, "skipped": data.skipped,
                                           "images": len(data),
                                           "empty_classes": list(data.empty_classes)}))  # fmt: skip


def finish_run(
    run: RunDir,
    result: TrainResult,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    model: nn.Module,
    **extra: Any,
) -> None:
    """Write ``loss.png`` and ``summary.json``: why and where the run stopped, its speed and
    hardware, and the method's own ``extra`` entries."""
    plot_loss([r for r in read_metrics(run.metrics) if "loss" in r], run.loss_plot)
    summary = {
        "reason": result.reason,
        "steps": result.step,
        "epochs": round(result.epochs_done, 4),  # fractional: a run may end mid-epoch
        "last_loss": result.last_loss,
        "train_seconds": result.elapsed,
        "images_per_sec": result.images_per_sec,
        "device": str(device),
        "precision": precision_name(autocast_dtype),
        "parameters": count_parameters(model),
        "compiled": result.compiled,  # None: eager by request; False: fell back to eager
    }
    write_json(run.summary, summary | extra)


def lock_for_resume(held: ExitStack, resume: RunDir) -> None:
    """Hold the run's lock (a second ``--resume`` of it fails, touching nothing) and drop
    the temp files a killed writer left, before anything of the run is read."""
    if not resume.last_checkpoint.is_file():
        raise CheckpointError(f"{resume.path} has no checkpoints/last.safetensors to resume")
    held.enter_context(RunLock(resume.path))
    clean_temporaries(resume.path)


def open_run(
    runs_dir: Path, folder: str, cfg: Any, held: ExitStack, resume: RunDir | None,
    resume_step: int | None, batches: int | None = None,
) -> RunDir:  # fmt: skip
    """The only place a method writes before training, reached once every input is valid:
    a fresh run folder under ``runs_dir/folder`` (locked at once, the lock held by
    ``held``), or the resumed one with its metrics cut back to ``resume_step`` (first:
    reading them is what can still fail), its config updated (e.g. new epochs) and its
    stale summary removed.

    A resumed run that already ran its length (``cfg.train``'s, with ``batches`` batches
    an epoch) raises :class:`~diffkit.errors.NothingToDo` and touches nothing."""
    done = resume is not None and resume_step is not None and batches is not None
    if done and resume_step >= run_length(cfg.train, batches):  # type: ignore[operator]
        raise NothingToDo(
            f"{resume.path} already ran its {resume_step} steps; nothing to do (give a "  # type: ignore[union-attr]
            "larger --epochs or --max-steps with --resume to train further)"
        )
    if resume is None:
        run = RunDir.create(runs_dir, folder, cfg.name)
        held.enter_context(RunLock(run.path))
    else:
        run = resume
    if resume_step is not None:
        truncate_after(run.metrics, resume_step)
    write_json(run.config, cfg.model_dump(mode="json"))
    if resume_step is not None:
        run.summary.unlink(missing_ok=True)  # stale until this process ends
    return run


def open_resumable(
    cfg: Any, settings: Settings, held: ExitStack, resume: RunDir | None, batches: int,
    folder: str, on_run_dir: Callable[[RunDir], None],
) -> tuple[RunDir, Checkpoint | None]:  # fmt: skip
    """A one-process run's folder and the checkpoint it resumes from (None for a fresh
    run): ``resume``'s last checkpoint is checked against the model and optimizer of
    ``cfg`` (``batches`` an epoch) before :func:`open_run` writes anything. The caller
    took the run's lock with :func:`lock_for_resume` before reading its data."""
    ckpt = None
    if resume is not None:
        ckpt, _ = load_resume(resume.last_checkpoint, cfg.model, cfg.train, world=1,
                              batches=batches)  # fmt: skip
    step = int(ckpt.train_state["position"]["step"]) if ckpt is not None else None
    run = open_run(settings.runs_dir, folder, cfg, held, resume, step, batches)
    on_run_dir(run)
    return run, ckpt
