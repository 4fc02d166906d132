"""Feature networks for the metrics: diffkit's own classifier (default), torchvision's
InceptionV3, or the TF-Inception of published FIDs through torch-fidelity.

An extractor maps uint8 images ``(B, C, H, W)`` to ``(features (B, D), logits (B, K))`` and
carries a content digest, so cached reference statistics are tied to the exact weights; its
``about()`` says which network it is (name, sha256, test accuracy, why it was chosen) for
the console and the reports.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor, nn

from diffkit.config.resolve import ConfigError
from diffkit.eval.classifiers import (
    CLASSIFIER_FILE,
    CLASSIFIER_FORMAT,
    ClassifierChoice,
    choose_classifier,
    read_record,
)
from diffkit.eval.metrics import GaussianStats, frechet_distance
from diffkit.progress import Track, no_track
from diffkit.runs.checkpoint import CheckpointError
from diffkit.runs.layout import atomic_write_bytes

__all__ = ["CLASSIFIER_FILE", "CLASSIFIER_FORMAT"]  # re-exported: their home is classifiers.py

INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"  # torchvision's IMAGENET1K_V1 weights
# torch-fidelity's port of the 2015-12-05 TF-Inception graph behind published FIDs
TF_INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
TF_INCEPTION_URL = (
    f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{TF_INCEPTION_FILE}"
)


class FeatureExtractor(Protocol):
    name: str  # "classifier" | "inception" | "tf-inception"
    digest: str  # sha256 of the weights
    num_classes: int
    feature_dim: int  # D, so memory can be estimated before extracting

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]: ...

    def about(self) -> dict[str, Any]:
        """kind, name, path, sha256, test_accuracy, and ``summary``: one line for people."""
        ...

    def frechet(self, a: GaussianStats, b: GaussianStats) -> float:
        """The FID formula this network's scores are computed with."""
        ...


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
    choice: ClassifierChoice  # which classifier this is, and why it scores
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

    def frechet(self, a: GaussianStats, b: GaussianStats) -> float:
        return frechet_distance(a, b)

    def about(self) -> dict[str, Any]:
        c = self.choice
        line = f"classifier {c.record.describe()}"
        if c.record.accuracy_from not in (None, "summary.json", CLASSIFIER_FILE):
            line += f" ({c.record.accuracy_from})"  # measured here: its run recorded none
        return c.as_json() | {"summary": f"{line}; {c.how}", "fid_backend": "diffkit"}

    def measure_accuracy(self, logits: Tensor, labels: Tensor) -> float:
        """Fill in a test accuracy its run did not record, from the test split's logits
        ``(N, K)`` and labels ``(N,)`` (the reference features already hold both)."""
        acc = float((logits.argmax(1) == labels).double().mean())
        where = f"measured on {len(labels)} {self.dataset} test images by this evaluation"
        record = replace(self.choice.record, test_accuracy=acc, accuracy_from=where)
        self.choice, self.test_accuracy = replace(self.choice, record=record), acc
        return acc


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


def load_classifier(
    path: Path, device: torch.device | str = "cpu", choice: ClassifierChoice | None = None
) -> ClassifierFeatures:
    """Load and verify a saved classifier (a run folder or its classifier.safetensors);
    ``choice`` says why it was picked (default: named by the caller)."""
    from diffkit.config.resolve import validate
    from diffkit.config.run import ClassifierRunConfig
    from diffkit.nn.build import build_model, meta_model
    from diffkit.runs.checkpoint import check_state, load_state, read_header

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
    load_state(net, tensors, path, "weights do not match the classifier config")
    device = torch.device(device)
    # the validated config, defaults filled in: a hand-edited one may lack keys used later
    config = cfg.model_dump(mode="json")
    if choice is None:
        choice = ClassifierChoice(read_record(path), f"loaded from {path}", explicit=True)
    return ClassifierFeatures(net.to(device).eval(), config, stored,
                              choice.record.test_accuracy, device, choice)  # fmt: skip


def find_classifier(runs_dir: Path, dataset: str) -> Path:
    """The ``classifier.safetensors`` that :func:`~diffkit.eval.classifiers.choose_classifier`
    picks for ``dataset`` under ``runs_dir``: the most accurate qualified one."""
    return choose_classifier(runs_dir, dataset).record.path


@dataclass
class InceptionFeatures:
    """torchvision's InceptionV3 (ImageNet weights, read from a local file, never downloaded):
    2048-d pool features and 1000 ImageNet logits. Not the TF-Inception of published FIDs,
    so its numbers compare only with each other."""

    net: nn.Module
    digest: str
    device: torch.device
    path: Path | None = None  # the weights file
    name: str = "inception"
    num_classes: int = 1000
    feature_dim: int = 2048  # the pool layer
    batch_size: int = 100  # 299x299 inputs: ~1 GB of activations per 100 images

    def frechet(self, a: GaussianStats, b: GaussianStats) -> float:
        return frechet_distance(a, b)

    def about(self) -> dict[str, Any]:
        return _weights_about(self.name, self.path, self.digest, "diffkit")

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

    fetch = (f"Copy torchvision's {INCEPTION_FILE} there (or set DIFFKIT_INCEPTION_WEIGHTS /"
             " --inception-weights)")  # fmt: skip
    path = _local_weights(weights, default_inception_path(), "InceptionV3 weights", fetch)
    state = read_state_dict(path)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(
            f"{path} does not hold InceptionV3 weights (its tensors do not match the network)"
        ) from None
    device = torch.device(device)
    return InceptionFeatures(net.to(device).eval(), _file_sha256(path), device, path)


def _local_weights(weights: Path | None, default: Path, what: str, fetch: str) -> Path:
    """``weights``, else ``default``: a file of published ``what`` that diffkit never
    downloads; a missing one is a one-line ConfigError that says how to ``fetch`` it."""
    path = Path(weights) if weights is not None else default
    if not path.is_file():
        raise ConfigError(f"{what} not found at {path}; diffkit never downloads them. "
                          f"{fetch}, or use --features classifier")  # fmt: skip
    return path


def _file_sha256(path: Path, what: str = "InceptionV3 weights") -> str:
    try:
        with path.open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise CheckpointError(f"cannot read {what} {path}: {exc}") from None


def _weights_about(kind: str, path: Path | None, digest: str, backend: str) -> dict[str, Any]:
    """``about()`` of a network with fixed published weights: no test accuracy to check."""
    summary = f"{kind} weights {path} (sha256 {digest[:12]}), FID by {backend}"
    return {"kind": kind, "name": None if path is None else path.name,
            "path": None if path is None else str(path), "sha256": digest,
            "test_accuracy": None, "fid_backend": backend, "warnings": [],
            "summary": summary}  # fmt: skip


@dataclass
class TFInceptionFeatures:
    """The TF-Inception graph behind published FIDs (the 2015-12-05 weights, as ported by
    torch-fidelity), from a local file, never downloaded: 2048-d pool features, and the 1008
    logits without bias that torch-fidelity's IS uses. torch-fidelity resizes to 299x299 the
    way TF1 did; gray images are repeated to 3 channels. FID by torch-fidelity's formula."""

    net: nn.Module  # torch_fidelity's FeatureExtractorInceptionV3
    digest: str
    device: torch.device
    path: Path
    name: str = "tf-inception"
    num_classes: int = 1008
    feature_dim: int = 2048
    batch_size: int = 100  # as InceptionFeatures

    @torch.no_grad()
    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = images.to(self.device)
        if x.dtype != torch.uint8:
            raise ConfigError("the TF-Inception features take uint8 images")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # (B, 1, H, W) -> (B, 3, H, W)
        feats, logits = self.net(x)
        return feats.float().cpu(), logits.float().cpu()

    def frechet(self, a: GaussianStats, b: GaussianStats) -> float:
        from diffkit.eval.fidelity import fidelity_frechet_distance

        return fidelity_frechet_distance(a, b)

    def about(self) -> dict[str, Any]:
        return _weights_about(self.name, self.path, self.digest, "torch-fidelity")


def default_tf_inception_path() -> Path:
    """Where torch-fidelity itself would have saved the file (torch hub's cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TF_INCEPTION_FILE


def load_tf_inception(
    weights: Path | None, device: torch.device | str = "cpu"
) -> TFInceptionFeatures:
    """TF-Inception from a local file through torch-fidelity (the ``fid`` extra); a missing
    file or package is a one-line ConfigError / DependencyError."""
    what = "TF-Inception weights"
    fetch = (f"Fetch {TF_INCEPTION_URL} to that path (or point DIFFKIT_TF_INCEPTION_WEIGHTS"
             " / --tf-inception-weights at a copy)")  # fmt: skip
    path = _local_weights(weights, default_tf_inception_path(), what, fetch)
    from diffkit.eval.fidelity import build_tf_inception

    read_state_dict(path, what)  # torch-fidelity unpickles the file in full: only a plain one
    net = build_tf_inception(path)
    device = torch.device(device)
    return TFInceptionFeatures(net.to(device).eval(), _file_sha256(path, what), device, path)


def read_state_dict(path: Path, what: str = "InceptionV3 weights") -> dict[str, Tensor]:
    """A ``{name: tensor}`` file read with ``weights_only``, which never runs its code;
    anything else (a crafted pickle, a zip of other things, random bytes) is a
    CheckpointError naming the file (as ``what``)."""
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notes on a file we refuse
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip, EOF and torch errors alike: the file is unusable
        # only the type: torch's text advises weights_only=False, which would run the file
        raise CheckpointError(
            f"cannot load {what} {path}: not a plain torch state dict ({type(exc).__name__})"
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
    tf_inception_weights: Path | None = None,
) -> FeatureExtractor:
    """The feature network for ``dataset``: ``classifier`` (the given one, used even if it
    does not qualify, else the most accurate qualified one under ``runs_dir``: see
    :func:`~diffkit.eval.classifiers.choose_classifier`), ``inception`` or ``tf-inception``
    (local weights only)."""
    if kind == "inception":
        return load_inception(inception_weights, device)
    if kind == "tf-inception":
        return load_tf_inception(tf_inception_weights, device)
    if kind != "classifier":
        raise ConfigError(
            f"unknown feature network {kind!r}; use classifier, inception or tf-inception"
        )
    choice = choose_classifier(runs_dir, dataset, classifier)
    return load_classifier(choice.record.path, device, choice)


def extract(
    extractor: FeatureExtractor,
    images: Tensor,
    batch_size: int | None = None,
    *,
    track: Track | None = None,
    label: str = "features",
) -> tuple[Tensor, Tensor]:
    """Features and logits of uint8 images (N, C, H, W), in batches of ``batch_size``
    (default: the extractor's ``batch_size``, else 500); results on the CPU. ``track``
    shows the images done (see :mod:`diffkit.progress`); default: none."""
    size = batch_size or getattr(extractor, "batch_size", 500)
    feats, logits = [], []
    with (track or no_track)(f"{label} ({extractor.name})", images.shape[0]) as advance:
        for start in range(0, images.shape[0], size):
            f, lg = extractor(images[start : start + size])
            feats.append(f)
            logits.append(lg)
            if advance is not None:
                advance(f.shape[0])
    return torch.cat(feats), torch.cat(logits)
