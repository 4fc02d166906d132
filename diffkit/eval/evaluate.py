"""Score generated images against a dataset's test split, next to the real-vs-real floor."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from diffkit.config.resolve import ConfigError
from diffkit.config.run import DataConfig
from diffkit.config.settings import Settings
from diffkit.data.loader import to_uint8
from diffkit.eval.features import ClassifierFeatures, FeatureExtractor, extract
from diffkit.eval.metrics import (
    GaussianStats,
    class_accuracy,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from diffkit.eval.reference import FeatureSet, real_features
from diffkit.progress import Track
from diffkit.resources import check_memory
from diffkit.runs.samples import sample_shards

MIN_SAMPLES = 10


@dataclass
class Evaluator:
    """Feature network + cached test-split features of one dataset.

    ``metrics`` returns FID (by the extractor's ``frechet``), KID (mean, std), IS (mean, std),
    precision/recall and, for labelled samples, the classifier's accuracy on the requested
    classes. A classifier whose run recorded no test accuracy gets it measured on the
    reference (test-split) features, which hold its logits and the labels anyway.
    ``track`` shows each feature extraction's progress (:mod:`diffkit.progress`; default
    none: the CLI passes its bars).
    """

    dataset: str
    extractor: FeatureExtractor
    settings: Settings
    data: DataConfig | None = None
    seed: int = 0
    kid_subsets: int = 100
    pr_k: int = 3
    track: Track | None = None
    reference: FeatureSet = field(init=False)
    _ref_stats: GaussianStats = field(init=False)

    def __post_init__(self) -> None:
        self.reference = real_features(
            self.dataset, "test", self.extractor, self.settings, data=self.data,
            track=self.track,
        )  # fmt: skip
        self._ref_stats = GaussianStats.of(self.reference.features)
        ex, ref = self.extractor, self.reference
        if (
            isinstance(ex, ClassifierFeatures)
            and ex.test_accuracy is None
            and ref.labels is not None
        ):
            ex.measure_accuracy(ref.logits, ref.labels)

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
            "fid": self.extractor.frechet(GaussianStats.of(fake.features), self._ref_stats),
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
        feats, logits = extract(self.extractor, images, track=self.track, label="sample features")
        return self.metrics(FeatureSet(feats, logits, labels))

    def floor(self, n: int) -> dict[str, Any]:
        """The same metrics for ``n`` real training images: the best a model can expect at
        this ``n`` (FID of finite samples is biased upwards)."""
        real = real_features(
            self.dataset, "train", self.extractor, self.settings,
            n=n, seed=self.seed, data=self.data, track=self.track,
        )  # fmt: skip
        return self.metrics(FeatureSet(real.features, real.logits))


SAMPLES_FILE = "samples.safetensors"  # one file, as sample and edit wrote before shards


def sample_files(path: Path) -> list[Path]:
    """The files a samples path stands for: a folder's shards ``samples-00000.safetensors``,
    ... in index order, else its ``samples.safetensors``; or the one file given."""
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise ConfigError(f"no samples at {path}")
        return [path]
    shards = sample_shards(path)
    if shards:
        return shards
    if (path / SAMPLES_FILE).is_file():
        return [path / SAMPLES_FILE]
    raise ConfigError(f"no samples-*.safetensors or {SAMPLES_FILE} in {path}")


def load_samples(path: Path, limit: int | None = None) -> tuple[Tensor, Tensor | None, Path]:
    """Images (and labels, if stored) from a samples folder (shards or one file) or file;
    ``limit`` keeps the first N.

    Returns (images uint8 (N, C, H, W), labels (N,) or None, the first file read). Each
    shard becomes uint8 as it is read, so memory stays at one byte per pixel."""
    files = sample_files(path)
    heads = [_shard_head(f) for f in files]
    shape = heads[0].shape
    for f, h in zip(files, heads, strict=True):
        if h.shape != shape:
            raise ConfigError(
                f"{f} holds samples of shape {h.shape}, but {files[0].name} holds {shape}"
            )
        if h.labelled != heads[0].labelled:
            raise ConfigError(f"{f}: some shards have 'labels' and some do not")
    total = sum(h.n for h in heads)
    total = total if limit is None else min(total, limit)
    check_memory(total * math.prod(shape), f"reading {total} samples of shape {shape}")
    images = torch.empty((total, *shape), dtype=torch.uint8)
    labels = torch.empty(total, dtype=torch.long) if heads[0].labelled else None
    filled = 0
    for f, h in zip(files, heads, strict=True):
        if filled == total:
            break
        x, y = _read_shard(f, h, total - filled)
        images[filled : filled + len(x)] = x
        if labels is not None and y is not None:
            labels[filled : filled + len(x)] = y
        filled += len(x)
    return images, labels, files[0]


@dataclass(frozen=True)
class _ShardHead:
    """What a shard's header says, read without loading its tensors."""

    key: str  # "samples" (or the older "images")
    n: int
    shape: tuple[int, ...]  # (C, H, W)
    labelled: bool


def _shard_head(file: Path) -> _ShardHead:
    try:
        with safe_open(str(file), framework="pt") as f:
            names = set(f.keys())
            key = "samples" if "samples" in names else "images"
            dims = f.get_slice(key).get_shape() if key in names else []
            label_dims = f.get_slice("labels").get_shape() if "labels" in names else None
            label_type = f.get_slice("labels").get_dtype() if "labels" in names else None
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"cannot read samples {file}: {exc}") from None
    if len(dims) != 4:
        raise ConfigError(f"{file} holds no 'samples' tensor of shape (N, C, H, W)")
    if label_dims is not None and list(label_dims) != [dims[0]]:
        raise ConfigError(f"{file}: 'labels' must have shape ({dims[0]},)")
    if label_type is not None and label_type[0] not in "IU":  # I64, U8, ...: integers
        raise ConfigError(f"{file}: 'labels' must be integer class indices, not {label_type}")
    return _ShardHead(key, dims[0], tuple(dims[1:]), label_dims is not None)


def _read_shard(file: Path, head: _ShardHead, limit: int) -> tuple[Tensor, Tensor | None]:
    """The first ``limit`` images of one shard as uint8, and their labels."""
    try:
        with safe_open(str(file), framework="pt") as f:
            x = f.get_slice(head.key)[:limit]
            y = f.get_slice("labels")[:limit].long() if head.labelled else None
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"cannot read samples {file}: {exc}") from None
    return (x if x.dtype == torch.uint8 else to_uint8(x)), y
