"""Classifier run folders as `diffkit train classifier` leaves them, made in milliseconds:
an untrained tiny CNN saved with the accuracy and recipe a test needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from diffkit.config.resolve import resolve_run_config
from diffkit.config.run import ClassifierRunConfig
from diffkit.eval.features import CLASSIFIER_FILE, save_classifier
from diffkit.nn.build import build_model

SMALL = {"model.widths": (4,), "model.feature_dim": 8}  # fast to load and to run


def classifier_run(
    runs: Path,
    stamp: str,
    accuracy: float | None,
    *,
    dataset: str = "mnist",
    flags: dict[str, Any] | None = None,
    reason: str = "finished",
    summary: bool = True,
    epochs: float | None = None,
) -> Path:
    """``runs/classifier/<stamp>-<dataset>/`` with config.json, classifier.safetensors (its
    metadata holding the recipe, ``accuracy`` and the sha256) and summary.json. ``flags``
    are config keys (e.g. ``{"data.limit": 4000}``); ``accuracy`` None writes a file whose
    run recorded none (no summary, no accuracy in the metadata)."""
    cfg = resolve_run_config(
        ClassifierRunConfig, {"data.dataset": dataset, **SMALL, **(flags or {})}, environ={}
    )
    folder = runs / "classifier" / f"{stamp}-{dataset}"
    folder.mkdir(parents=True)
    config = cfg.model_dump(mode="json")
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(int(stamp.replace("-", "")) % 2**31)  # other weights, other sha256
    file = folder / CLASSIFIER_FILE
    digest = save_classifier(file, build_model(cfg.model).eval(), config, accuracy or 0.0)
    if accuracy is None:
        with safe_open(str(file), framework="pt") as f:
            meta = {k: v for k, v in f.metadata().items() if k != "diffkit.test_accuracy"}
        save_file(load_file(str(file)), str(file), metadata=meta)
    elif summary:
        record = {"reason": reason, "steps": 20, "test_accuracy": accuracy, "sha256": digest}
        if epochs is not None:  # the fractional epochs run, as summary.json records them
            record["epochs"] = epochs
        (folder / "summary.json").write_text(json.dumps(record))
    return folder


def alex_backbone(path: Path, seed: int = 0) -> Path:
    """A random AlexNet backbone saved as torchvision saves its ImageNet file (features.*),
    with a two-tensor stand-in for the 58 M-parameter classifier head LPIPS drops."""
    from torchvision.models import alexnet

    torch.manual_seed(seed)
    state = alexnet(weights=None).features.state_dict()
    head = {"classifier.1.weight": torch.zeros(2, 2), "classifier.1.bias": torch.zeros(2)}
    torch.save({f"features.{k}": v for k, v in state.items()} | head, path)
    return path
