"""What ``diffkit eval`` scores: a model to sample (a run folder, a checkpoint, a diffusers
model) or stored samples (a samples folder or file), the data the images imitate, and the
checks that refuse a request before any scoring."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffkit.errors import UsageError
from diffkit.runs.layout import run_folder_of

if TYPE_CHECKING:
    from diffkit.eval.features import FeatureExtractor


def is_checkpoint(path: Path) -> bool:
    """A run folder or a diffkit checkpoint file (as opposed to a samples file/folder)."""
    from safetensors import SafetensorError, safe_open

    from diffkit.external import is_foreign
    from diffkit.runs.checkpoint import FORMAT

    if is_foreign(path):  # a diffusers pipeline folder or hf:ORG/NAME
        return True
    if path.is_dir():
        from diffkit.eval.evaluate import SAMPLES_FILE
        from diffkit.runs.samples import sample_shards

        samples = (path / "sample.json").exists() or (path / SAMPLES_FILE).exists()
        return (path / "config.json").is_file() and not (samples or sample_shards(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("diffkit.format") == FORMAT
    except (SafetensorError, OSError):
        return False


def is_vae(source: Path) -> bool:
    """A `diffkit train vae` run folder or its vae.safetensors."""
    from diffkit.methods.vae import VAE_FILE

    return (source / VAE_FILE).is_file() if source.is_dir() else source.name == VAE_FILE


def _dataset_of_samples(file: Path) -> tuple[str | None, dict]:
    """The dataset a samples folder was drawn for: sample.json's ``data`` (or its source
    run's config)."""
    try:
        meta = json.loads((file.parent / "sample.json").read_text())
        if isinstance(meta.get("data"), dict) and "dataset" in meta["data"]:
            data = meta["data"]
        else:
            src = Path(meta["source"])
            data = json.loads((run_folder_of(src) / "config.json").read_text())["data"]
        name = data["dataset"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unknown provenance
        return None, {}
    return (name, data) if isinstance(name, str) and isinstance(data, dict) else (None, {})


@dataclass
class Source:
    """What ``diffkit eval`` scores: a model to sample (``pipe``, steered by ``hints``
    for a ControlNet) or stored ``images``."""

    data: Any  # DataConfig of the dataset the images imitate
    folder: Path  # where eval/ goes by default
    pipe: Any = None
    images: Any = None
    labels: Any = None
    hints: Any = None

    def count(self, n: int) -> int:
        """How many images are scored: ``n`` sampled, or those stored."""
        return n if self.pipe is not None else self.images.shape[0]

    @classmethod
    def open(cls, source: Path, dataset: str | None, n: int, device, use_ema: bool) -> Source:
        from diffkit.config.resolve import ConfigError, validate
        from diffkit.config.run import DataConfig
        from diffkit.data.prepared import with_manifest_shape
        from diffkit.eval.evaluate import MIN_SAMPLES, load_samples

        if is_checkpoint(source):
            from diffkit.methods.load import load_pipeline

            pipe = load_pipeline(source, device, use_ema=use_ema)
            if pipe.config is None:  # a foreign model: the data it imitates must be named
                return cls(_foreign_data(dataset, pipe, source), Path.cwd(), pipe=pipe)
            if dataset is not None and dataset != pipe.config.data.dataset:
                raise UsageError(
                    f"--dataset {dataset} differs from the model's {pipe.config.data.dataset}"
                )
            return cls(pipe.config.data, run_folder_of(source), pipe=pipe)
        images, labels, file = load_samples(source, limit=n)
        found, stored = _dataset_of_samples(file)
        name = dataset or found
        if name is None:
            raise UsageError(f"cannot tell which dataset {file} imitates; pass --dataset")
        if images.shape[0] < MIN_SAMPLES:
            raise UsageError(f"{file} holds {images.shape[0]} samples; need {MIN_SAMPLES}")
        try:
            section = stored if found == name else {"dataset": name}
            data = validate(DataConfig, with_manifest_shape(section))
        except ConfigError as exc:
            where = "--dataset" if found != name else str(file.parent / "sample.json")
            raise ConfigError(f"{where}: {exc}") from None
        return cls(data, file.parent, images=images, labels=labels)


def _foreign_data(dataset: str | None, pipe, source: Path):
    """The data a foreign model's samples are scored against: ``--dataset``, whose images
    must have the model's shape."""
    from diffkit.config.resolve import validate
    from diffkit.config.run import DataConfig
    from diffkit.data.prepared import with_manifest_shape
    from diffkit.data.registry import image_shape

    if dataset is None:
        raise UsageError(f"{source} does not say which data it imitates; pass --dataset")
    channels, h, w = pipe.model.sample_shape
    # A prepared folder's shape is its manifest's (checked against the model's here).
    data = validate(DataConfig, with_manifest_shape({"dataset": dataset,
                                                     "channels": min(channels, 3),
                                                     "image_size": h}))  # fmt: skip
    if image_shape(data) != (channels, h) or h != w:
        c, size = image_shape(data)
        raise UsageError(f"{source} draws {channels}x{h}x{w} images; {dataset} has "
                         f"{c}x{size}x{size}")  # fmt: skip
    return data


def check_labels(src: Source, num_classes: int) -> None:
    """Stored class labels must index the feature network's classes, or class accuracy
    would fail (or be nonsense) after the whole scoring."""
    if src.labels is None or len(src.labels) == 0:
        return
    low, high = int(src.labels.min()), int(src.labels.max())
    bad = low if low < 0 else high if high >= num_classes else None
    if bad is not None:
        raise UsageError(f"samples in {src.folder}: label {bad} is outside the feature "
                         f"network's classes 0..{num_classes - 1}")  # fmt: skip


def check_memory(src: Source, n: int, extractor: FeatureExtractor) -> None:
    """Refuse an ``n`` whose images and features cannot fit in RAM, before allocating any.

    A model's samples exist as the float32 batches and their concatenation (after the
    initial noise in its own space); the samples' and the real floor's features follow."""
    from diffkit.data.registry import image_shape
    from diffkit.resources import check_memory

    per_image = 2 * 4 * (extractor.feature_dim + extractor.num_classes)
    if src.pipe is not None:
        channels, size = image_shape(src.data)
        per_image += 4 * math.prod(src.pipe.model.sample_shape) + 2 * 4 * channels * size**2
    what = f"{'generating and ' if src.pipe is not None else ''}scoring {n} images"
    check_memory(n * per_image, what)
