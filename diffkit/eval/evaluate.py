"""Score generated images against a dataset's test split, next to the real-vs-real floor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from diffkit.config.resolve import ConfigError
from diffkit.config.run import DataConfig
from diffkit.config.settings import Settings
from diffkit.data.loader import to_uint8
from diffkit.eval.features import FeatureExtractor, extract
from diffkit.eval.metrics import (
    GaussianStats,
    class_accuracy,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from diffkit.eval.reference import FeatureSet, real_features

MIN_SAMPLES = 10


@dataclass
class Evaluator:
    """Feature network + cached test-split features of one dataset.

    ``metrics`` returns FID, KID (mean, std), IS (mean, std), precision/recall and, for labelled
    samples, the classifier's accuracy on the requested classes.
    """

    dataset: str
    extractor: FeatureExtractor
    settings: Settings
    data: DataConfig | None = None
    seed: int = 0
    kid_subsets: int = 100
    pr_k: int = 3
    reference: FeatureSet = field(init=False)
    _ref_stats: GaussianStats = field(init=False)

    def __post_init__(self) -> None:
        self.reference = real_features(
            self.dataset, "test", self.extractor, self.settings, data=self.data
        )
        self._ref_stats = GaussianStats.of(self.reference.features)

    def metrics(self, fake: FeatureSet) -> dict[str, Any]:
        n = len(fake)
        if n < MIN_SAMPLES:
            raise ConfigError(f"need at least {MIN_SAMPLES} samples to score, got {n}")
        ref = self.reference.features
        kid, kid_std = kernel_inception_distance(
            fake.features, ref, subsets=self.kid_subsets, seed=self.seed
        )
        is_mean, is_std = inception_score(fake.logits)
        m = min(n, len(ref))
        sub = torch.randperm(len(ref), generator=torch.Generator().manual_seed(self.seed))[:m]
        precision, recall = precision_recall(ref[sub], fake.features[:m], k=self.pr_k)
        out: dict[str, Any] = {
            "n": n,
            "fid": frechet_distance(GaussianStats.of(fake.features), self._ref_stats),
            "kid": kid,
            "kid_std": kid_std,
            "is": is_mean,
            "is_std": is_std,
            "precision": precision,
            "recall": recall,
        }
        if fake.labels is not None:
            out["class_accuracy"] = class_accuracy(
                fake.logits, fake.labels, self.extractor.num_classes
            )
        return out

    def score_images(self, images: Tensor, labels: Tensor | None = None) -> dict[str, Any]:
        """images: uint8 (N, C, H, W), or float in [-1, 1] (converted)."""
        if images.dtype != torch.uint8:
            images = to_uint8(images)
        feats, logits = extract(self.extractor, images)
        return self.metrics(FeatureSet(feats, logits, labels))

    def floor(self, n: int) -> dict[str, Any]:
        """The same metrics for ``n`` real training images: the best a model can expect at
        this ``n`` (FID of finite samples is biased upwards)."""
        real = real_features(
            self.dataset, "train", self.extractor, self.settings,
            n=n, seed=self.seed, data=self.data,
        )  # fmt: skip
        return self.metrics(FeatureSet(real.features, real.logits))


def load_samples(path: Path) -> tuple[Tensor, Tensor | None, Path]:
    """Images (and labels, if stored) from ``samples.safetensors`` or a folder holding one.

    Returns (images uint8 (N, C, H, W), labels (N,) or None, the file read)."""
    path = Path(path)
    file = path / "samples.safetensors" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"no samples.safetensors in {path}")
    try:
        tensors = load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"cannot read samples {file}: {exc}") from None
    images = tensors.get("samples", tensors.get("images"))
    if images is None or images.ndim != 4:
        raise ConfigError(f"{file} holds no 'samples' tensor of shape (N, C, H, W)")
    if images.dtype != torch.uint8:
        images = to_uint8(images)
    labels = tensors.get("labels")
    if labels is not None and labels.shape != (images.shape[0],):
        raise ConfigError(f"{file}: 'labels' must have shape ({images.shape[0]},)")
    return images, labels, file
