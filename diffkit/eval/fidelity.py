"""torch-fidelity, the optional ``diffkit[fid]`` extra: the TF-Inception network and the FID
formula of published numbers, for ``--features tf-inception``.

Why torch-fidelity (not clean-fid): it takes uint8 image tensors in memory, so diffkit's own
sampling, batching and reference cache stay as they are; its InceptionV3 takes the weights
file as a plain path argument (diffkit never downloads), reproduces TF1's resize, and it
needs no package diffkit does not install already. clean-fid's API is built around folders
of image files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from diffkit.errors import CheckpointError, DependencyError
from diffkit.eval.metrics import GaussianStats

INSTALL = "pip install 'diffkit[fid]' (or pip install torch-fidelity)"


def _fidelity(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"torch_fidelity.{module}")
    except ImportError:
        raise DependencyError(f"--features tf-inception needs torch-fidelity: {INSTALL}") from None


def build_tf_inception(path: Path) -> nn.Module:
    """torch-fidelity's InceptionV3 with the weights at ``path`` (returns (pool features
    (B, 2048), unbiased logits (B, 1008)) of uint8 (B, 3, H, W) images)."""
    inception = _fidelity("feature_extractor_inceptionv3")
    try:
        return inception.FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(path),
        )  # fmt: skip
    except RuntimeError:  # load_state_dict: missing or unexpected tensors, wrong shapes
        raise CheckpointError(
            f"{path} does not hold torch-fidelity's TF-Inception weights (its tensors do not "
            "match the network)"
        ) from None


def fidelity_frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """FID by torch-fidelity's own formula (TTUR's: the trace term from the eigenvalues of
    Σ_a Σ_b) on diffkit's float64 statistics: a published-FID code path, cross-checked
    against :func:`diffkit.eval.metrics.frechet_distance` in the tests."""
    fid = _fidelity("metric_fid")
    stats = [{"mu": s.mu.double().numpy(), "sigma": s.sigma.double().numpy()} for s in (a, b)]
    return float(fid.fid_statistics_to_metric(*stats, verbose=False)[fid.KEY_METRIC_FID])
