"""Sample-quality metrics on feature vectors: FID, KID, Inception Score, precision/recall.

All functions take features ``(N, D)`` and logits ``(N, K)`` as tensors and return plain floats,
so they work with any feature network. Statistics are computed in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianStats:
    """Mean ``(D,)`` and covariance ``(D, D)`` of a feature set, float64."""

    mu: Tensor
    sigma: Tensor

    @classmethod
    def of(cls, features: Tensor) -> GaussianStats:
        f = features.double()
        if f.shape[0] < 2:
            raise ValueError("need at least 2 feature vectors for a covariance")
        return cls(f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1]))


def _sqrtm_psd(m: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance between two Gaussians (Dowson & Landau 1982; FID of Heusel et al. 2017):

        d² = ‖μ_a − μ_b‖² + tr Σ_a + tr Σ_b − 2 tr (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}

    The trace term uses the symmetric product Σ_a^{1/2} Σ_b Σ_a^{1/2}, whose eigenvalues equal
    those of Σ_a Σ_b but which stays symmetric PSD, so ``eigvalsh`` is exact and stable where
    scipy's ``sqrtm`` of the non-symmetric Σ_a Σ_b can return complex parts.
    """
    root_a = _sqrtm_psd(a.sigma)
    inner = root_a @ b.sigma @ root_a
    trace_cross = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
    diff = a.mu - b.mu
    d2 = diff @ diff + a.sigma.trace() + b.sigma.trace() - 2 * trace_cross
    return max(float(d2), 0.0)


def kernel_inception_distance(
    x: Tensor,
    y: Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): unbiased MMD² with the kernel k(a, b) = (aᵀb / D + 1)³,
    averaged over random subsets; returns (mean, std over subsets).

    x: (N, D), y: (M, D). The subset size is capped by the smaller set.
    """
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    x, y = x.double(), y.double()
    d = x.shape[1]
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        a = x[torch.randperm(x.shape[0], generator=gen)[:m]]
        b = y[torch.randperm(y.shape[0], generator=gen)[:m]]
        k_aa = (a @ a.T / d + 1) ** 3
        k_bb = (b @ b.T / d + 1) ** 3
        k_ab = (a @ b.T / d + 1) ** 3
        off = m * (m - 1)
        mmd = (
            (k_aa.sum() - k_aa.diagonal().sum()) / off
            + (k_bb.sum() - k_bb.diagonal().sum()) / off
            - 2 * k_ab.mean()
        )
        values.append(float(mmd))
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float]:
    """IS = exp E_x KL(p(y|x) ‖ p(y)) (Salimans et al. 2016), mean and std over ``splits``.

    logits: (N, K). Bounded by K (confident predictions spread evenly over all classes).
    """
    logp = torch.log_softmax(logits.double(), dim=1)
    scores = []
    for chunk in logp.chunk(max(1, min(splits, logp.shape[0]))):
        log_py = torch.logsumexp(chunk, 0) - math.log(chunk.shape[0])  # log mean p(y|x)
        kl = (chunk.exp() * (chunk - log_py)).sum(1).mean()
        scores.append(float(kl.exp()))
    t = torch.tensor(scores, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(scores) > 1 else 0.0


def _kth_neighbour_radius(x: Tensor, k: int, chunk: int) -> Tensor:
    """Distance from each row of x to its k-th nearest other row. x: (N, D) -> (N,)."""
    out = []
    for start in range(0, x.shape[0], chunk):
        d = torch.cdist(x[start : start + chunk], x)  # (c, N); the 0 to itself is the 1st
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def _covered(queries: Tensor, centres: Tensor, radii: Tensor, chunk: int) -> Tensor:
    """Fraction of ``queries`` inside at least one ball (centre_i, radius_i)."""
    hits = []
    for start in range(0, queries.shape[0], chunk):
        d = torch.cdist(queries[start : start + chunk], centres)  # (c, M)
        hits.append((d <= radii[None]).any(1))
    return torch.cat(hits).double().mean()


def precision_recall(
    real: Tensor, fake: Tensor, k: int = 3, chunk: int = 1024
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN feature manifolds.

    Precision: share of fake samples inside the real manifold (fidelity); recall: share of
    real samples inside the fake manifold (coverage). real: (N, D), fake: (M, D).
    """
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    real, fake = real.float(), fake.float()
    precision = _covered(fake, real, _kth_neighbour_radius(real, k, chunk), chunk)
    recall = _covered(real, fake, _kth_neighbour_radius(fake, k, chunk), chunk)
    return float(precision), float(recall)


def class_accuracy(logits: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """Share of samples the classifier assigns to the requested class, overall and per class.

    logits: (N, K), labels: (N,) int. Keys: ``all`` and the class index as a string.
    """
    hit = (logits.argmax(1) == labels).double()
    out = {"all": float(hit.mean())}
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            out[str(c)] = float(hit[mask].mean())
    return out
