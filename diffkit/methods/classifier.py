"""Train the feature classifier of the offline metrics with the shared training loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from torch import nn

from diffkit.config.run import ClassifierRunConfig
from diffkit.config.settings import Settings
from diffkit.data.batching import make_batches
from diffkit.data.registry import DataError, ImageData
from diffkit.eval.features import CLASSIFIER_FILE, save_classifier
from diffkit.methods.common import finish_run, load_splits, lock_for_resume, open_resumable
from diffkit.methods.registry import method_objective, method_of
from diffkit.nn.build import build_model, check_trainable
from diffkit.runs.layout import RunDir
from diffkit.training import TrainEvent, TrainResult, train
from diffkit.training.hardware import resolve_device, resolve_precision


@dataclass
class ClassifierResult:
    run: RunDir
    train: TrainResult
    test_accuracy: float | None  # None when training did not finish
    digest: str | None


@torch.no_grad()
def accuracy(
    net: nn.Module, data: ImageData, device: torch.device, batch_size: int = 1000
) -> float:
    """Top-1 accuracy of ``net`` on a labelled dataset."""
    from diffkit.data.loader import to_unit_range

    net.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        x = to_unit_range(data.images[start : start + batch_size].to(device))
        y = data.labels[start : start + batch_size].to(device)
        correct += int((net(x).argmax(1) == y).sum())
    return correct / len(data)


def train_classifier(
    cfg: ClassifierRunConfig,
    settings: Settings,
    *,
    resume: RunDir | None = None,
    on_event: Callable[[TrainEvent], None] = lambda e: None,
    on_run_dir: Callable[[RunDir], None] = lambda r: None,
) -> ClassifierResult:
    """Train (or ``resume``) the classifier, measure test accuracy, and write
    ``classifier.safetensors`` into the run folder only when training finished: an
    interrupted run never leaves a half-trained extractor (its checkpoints resume it).
    A network too large for memory, or a resume checkpoint that does not fit the model,
    is refused before anything is written; the run folder is locked (:class:`RunLock`)
    while training writes it."""
    device = resolve_device(settings.device)
    autocast_dtype = resolve_precision(cfg.train.precision, device)
    check_trainable(cfg.model, device)
    with ExitStack() as held:
        if resume is not None:
            lock_for_resume(held, resume)
        train_data, test_data = load_splits(cfg.data, settings, on_event)
        if train_data.labels is None:
            raise DataError(f"{cfg.data.dataset} has no labels; the classifier needs them")
        batches = make_batches(train_data, cfg.train.batch_size, seed=cfg.train.seed,
                               device=device)  # fmt: skip
        folder = method_of(cfg.method).runs_folder(cfg)
        run, ckpt = open_resumable(cfg, settings, held, resume, len(batches), folder,
                                   on_run_dir)  # fmt: skip
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model)
        run_config = cfg.model_dump(mode="json")
        t0 = time.time()
        result = train(
            model, method_objective(cfg), batches, cfg.train, device=device,
            autocast_dtype=autocast_dtype, run=run, run_config=run_config, resume=ckpt,
            on_event=on_event, compile_backend=settings.compile_with,
        )  # fmt: skip
        acc = digest = None
        if result.reason in ("finished", "max_steps"):
            net = model.to(memory_format=torch.contiguous_format)
            acc = accuracy(net, test_data, device)
            digest = save_classifier(run.path / CLASSIFIER_FILE, net, run_config, acc)
        finish_run(
            run, result, device=device, autocast_dtype=autocast_dtype, model=model,
            test_accuracy=acc, sha256=digest, wall_seconds=time.time() - t0,
            train_images=len(train_data), test_images=len(test_data),
        )  # fmt: skip
        return ClassifierResult(run, result, acc, digest)
