"""Features of real images, cached per dataset + split + selection + feature network digest."""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor

from diffkit.config.resolve import ConfigError
from diffkit.config.run import DataConfig
from diffkit.config.settings import Settings
from diffkit.data.registry import Split, load_dataset
from diffkit.eval.features import FeatureExtractor, extract
from diffkit.progress import Track
from diffkit.runs.layout import atomic_write_bytes


@dataclass(frozen=True)
class FeatureSet:
    """features: (N, D), logits: (N, K), labels: (N,) or None."""

    features: Tensor
    logits: Tensor
    labels: Tensor | None = None

    def __len__(self) -> int:
        return self.features.shape[0]


def _cache_path(cache_dir: Path, dataset: str, split: str, tag: str, ex: FeatureExtractor) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", dataset)
    if safe != dataset:  # folder:PATH -> a readable stem plus a hash of the full name
        safe = safe[-40:] + "-" + hashlib.sha256(dataset.encode()).hexdigest()[:8]
    return cache_dir / "eval" / f"{safe}-{split}-{tag}-{ex.name}-{ex.digest[:16]}.safetensors"


def real_features(
    dataset: str,
    split: Split,
    extractor: FeatureExtractor,
    settings: Settings,
    *,
    n: int | None = None,
    seed: int = 0,
    data: DataConfig | None = None,
    track: Track | None = None,
) -> FeatureSet:
    """Features of a dataset split: all images, or ``n`` drawn without replacement with
    ``seed``. Cached under ``settings.cache_dir/eval``; a corrupt cache file is recomputed
    (``track`` shows that extraction's progress)."""
    tag = "all" if n is None else f"n{n}-seed{seed}"
    path = _cache_path(settings.cache_dir, dataset, split, tag, extractor)
    if path.is_file():
        try:
            t = load_file(str(path))
            return FeatureSet(t["features"], t["logits"], t.get("labels"))
        except (SafetensorError, OSError, KeyError):
            with contextlib.suppress(OSError):  # corrupt: recomputed below
                path.unlink(missing_ok=True)
    cfg = data or DataConfig(dataset=dataset)
    real = load_dataset(cfg, settings.data_dir, split, download=settings.download)
    images, labels = real.images, real.labels
    if n is not None:
        if n > len(real):
            raise ConfigError(
                f"{dataset} {split} split has {len(real)} images, fewer than the {n} the "
                f"real-image comparison needs; score at most {len(real)} images"
            )
        idx = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:n]
        images = images[idx]
        labels = labels[idx] if labels is not None else None
    feats, logits = extract(extractor, images, track=track, label=f"{dataset} {split} features")
    tensors = {"features": feats.contiguous(), "logits": logits.contiguous()}
    if labels is not None:
        tensors["labels"] = labels.contiguous()
    with contextlib.suppress(OSError):  # a read-only or full cache costs a recompute only
        atomic_write_bytes(path, save(tensors))
    return FeatureSet(feats, logits, labels)
