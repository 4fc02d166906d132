"""Feature networks for the metrics: diffkit's own classifier (default) or InceptionV3.

An extractor maps uint8 images ``(B, C, H, W)`` to ``(features (B, D), logits (B, K))`` and
carries a content digest, so cached reference statistics are tied to the exact weights.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor, nn

from diffkit.config.resolve import ConfigError
from diffkit.runs.checkpoint import CheckpointError
from diffkit.runs.layout import atomic_write_bytes

CLASSIFIER_FORMAT = "diffkit-classifier-1"
CLASSIFIER_FILE = "classifier.safetensors"
INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"  # torchvision's IMAGENET1K_V1 weights


class FeatureExtractor(Protocol):
    name: str  # "classifier" | "inception"
    digest: str  # sha256 of the weights
    num_classes: int
    feature_dim: int  # D, so memory can be estimated before extracting

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]: ...


def tensor_digest(tensors: dict[str, Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes, in name order: equal iff the weights are."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass
class ClassifierFeatures:
    """diffkit's CNN classifier as a feature extractor (features: its ``feature_dim`` layer)."""

    net: nn.Module
    config: dict[str, Any]  # the ClassifierRunConfig it was trained with
    digest: str
    test_accuracy: float | None
    device: torch.device
    name: str = "classifier"

    @property
    def num_classes(self) -> int:
        return self.config["model"]["num_classes"]

    @property
    def feature_dim(self) -> int:
        return self.config["model"]["feature_dim"]

    @property
    def dataset(self) -> str:
        return self.config["data"]["dataset"]

    @torch.no_grad()
    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        m = self.config["model"]
        want = (m["in_channels"], m["image_size"], m["image_size"])
        if tuple(images.shape[1:]) != want:
            raise ConfigError(
                f"images of shape {tuple(images.shape[1:])} do not fit the classifier "
                f"trained on {self.dataset} {want}"
            )
        x = images.to(self.device).float().div_(127.5).sub_(1.0)
        f, logits = self.net.features_and_logits(x)
        return f.float().cpu(), logits.float().cpu()


def save_classifier(
    path: Path, net: nn.Module, run_config: dict[str, Any], test_accuracy: float
) -> str:
    """Write the weights with recipe, test accuracy and content digest; returns the digest."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    digest = tensor_digest(tensors)
    meta = {
        "diffkit.format": CLASSIFIER_FORMAT,
        "diffkit.config": json.dumps(run_config),
        "diffkit.sha256": digest,
        "diffkit.test_accuracy": repr(test_accuracy),
    }
    atomic_write_bytes(path, save(tensors, metadata=meta))
    return digest


def load_classifier(path: Path, device: torch.device | str = "cpu") -> ClassifierFeatures:
    """Load and verify a saved classifier (a run folder or its classifier.safetensors)."""
    from diffkit.config.resolve import validate
    from diffkit.config.run import ClassifierRunConfig
    from diffkit.nn.build import build_model, meta_model
    from diffkit.runs.checkpoint import check_state, read_header

    path = Path(path)
    if path.is_dir():
        path = path / CLASSIFIER_FILE
    if not path.is_file():
        raise CheckpointError(f"classifier not found: {path}")
    meta, specs = read_header(path)  # nothing is allocated before the shapes are checked
    if meta.get("diffkit.format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path} is not a diffkit classifier")
    try:
        config = json.loads(meta["diffkit.config"])
        stored = meta["diffkit.sha256"]
        accuracy = float(meta["diffkit.test_accuracy"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot read classifier {path}: {exc}") from None
    try:
        cfg = validate(ClassifierRunConfig, config)
    except ValueError as exc:
        raise CheckpointError(f"{path}: classifier config: {exc}") from None
    check_state(meta_model(cfg.model), specs, path,
                mismatch="weights do not match the classifier config")  # fmt: skip
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read classifier {path}: {exc}") from None
    if tensor_digest(tensors) != stored:
        raise CheckpointError(f"{path}: weights do not match their recorded sha256 (modified?)")
    net = build_model(cfg.model)
    try:
        net.load_state_dict(tensors)
    except RuntimeError:
        raise CheckpointError(f"{path}: weights do not match the classifier config") from None
    device = torch.device(device)
    # the validated config, defaults filled in: a hand-edited one may lack keys used later
    config = cfg.model_dump(mode="json")
    return ClassifierFeatures(net.to(device).eval(), config, stored, accuracy, device)


def find_classifier(runs_dir: Path, dataset: str) -> Path:
    """The newest ``classifier/*/classifier.safetensors`` under ``runs_dir`` for ``dataset``."""
    for path in sorted(Path(runs_dir).glob(f"classifier/*/{CLASSIFIER_FILE}"), reverse=True):
        try:
            cfg = json.loads((path.parent / "config.json").read_text())
        except (OSError, ValueError):
            continue
        data = cfg.get("data") if isinstance(cfg, dict) else None  # skip malformed configs
        if isinstance(data, dict) and data.get("dataset") == dataset:
            return path
    raise ConfigError(
        f"no feature classifier for {dataset} under {runs_dir}/classifier; train one with "
        f"`diffkit train classifier --dataset {dataset}` or pass --classifier PATH"
    )


@dataclass
class InceptionFeatures:
    """torchvision's InceptionV3 (ImageNet weights, read from a local file, never downloaded):
    2048-d pool features and 1000 ImageNet logits. Not the TF-Inception of published FIDs,
    so its numbers compare only with each other."""

    net: nn.Module
    digest: str
    device: torch.device
    name: str = "inception"
    num_classes: int = 1000
    feature_dim: int = 2048  # the pool layer

    @torch.no_grad()
    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        import torch.nn.functional as F

        x = images.to(self.device).float().div_(255.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
        pooled: list[Tensor] = []
        handle = self.net.avgpool.register_forward_hook(lambda m, i, o: pooled.append(o))
        try:
            logits = self.net((x - mean) / std)
        finally:
            handle.remove()
        return pooled[0].flatten(1).float().cpu(), logits.float().cpu()


def default_inception_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def load_inception(weights: Path | None, device: torch.device | str = "cpu") -> InceptionFeatures:
    """InceptionV3 from a local state dict; a missing file is a one-line ConfigError."""
    from torchvision.models import inception_v3

    path = Path(weights) if weights is not None else default_inception_path()
    if not path.is_file():
        raise ConfigError(
            f"InceptionV3 weights not found at {path}; diffkit never downloads them. Copy "
            f"torchvision's {INCEPTION_FILE} there (or set DIFFKIT_INCEPTION_WEIGHTS / "
            "--inception-weights), or use --features classifier"
        )
    state = _read_state_dict(path)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(
            f"{path} does not hold InceptionV3 weights (its tensors do not match the network)"
        ) from None
    try:
        with path.open("rb") as f:
            h = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise CheckpointError(f"cannot read InceptionV3 weights {path}: {exc}") from None
    device = torch.device(device)
    return InceptionFeatures(net.to(device).eval(), h, device)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """A ``{name: tensor}`` file read with ``weights_only``, which never runs its code;
    anything else (a crafted pickle, a zip of other things, random bytes) is a
    CheckpointError naming the file."""
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes on a file we refuse
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip, EOF and torch errors alike: the file is unusable
        # only the type: torch's text advises weights_only=False, which would run the file
        raise CheckpointError(
            f"cannot load InceptionV3 weights {path}: not a plain torch state dict "
            f"({type(exc).__name__})"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{path} does not hold a state dict of named tensors")
    return dict(state)


def load_extractor(
    kind: str,
    dataset: str,
    runs_dir: Path,
    device: torch.device | str = "cpu",
    *,
    classifier: Path | None = None,
    inception_weights: Path | None = None,
) -> FeatureExtractor:
    """The feature network for ``dataset``: ``classifier`` (the given one, else the newest
    trained for the dataset under ``runs_dir``) or ``inception`` (local weights only)."""
    if kind == "inception":
        return load_inception(inception_weights, device)
    if kind != "classifier":
        raise ConfigError(f"unknown feature network {kind!r}; use classifier or inception")
    path = classifier or find_classifier(runs_dir, dataset)
    ex = load_classifier(path, device)
    if ex.dataset != dataset:
        raise ConfigError(f"classifier {path} was trained on {ex.dataset}, not {dataset}")
    return ex


def extract(
    extractor: FeatureExtractor, images: Tensor, batch_size: int = 500
) -> tuple[Tensor, Tensor]:
    """Features and logits of uint8 images (N, C, H, W), batched; results on the CPU."""
    feats, logits = [], []
    for start in range(0, images.shape[0], batch_size):
        f, lg = extractor(images[start : start + batch_size])
        feats.append(f)
        logits.append(lg)
    return torch.cat(feats), torch.cat(logits)
