"""Metrics against closed forms and invariants, on synthetic features."""

from __future__ import annotations

import math

import pytest
import torch

from diffkit.eval.metrics import (
    GaussianStats,
    class_accuracy,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)


def _spd(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_of_identical_stats_is_zero():
    s = GaussianStats(torch.randn(16, dtype=torch.float64), _spd(16, 0))
    assert frechet_distance(s, s) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_matches_closed_form_for_diagonal_covariances():
    g = torch.Generator().manual_seed(1)
    mu_a, mu_b = torch.randn(8, generator=g).double(), torch.randn(8, generator=g).double()
    var_a = torch.rand(8, generator=g).double() + 0.1
    var_b = torch.rand(8, generator=g).double() + 0.1
    a, b = GaussianStats(mu_a, var_a.diag()), GaussianStats(mu_b, var_b.diag())
    # d² = |mu_a - mu_b|² + sum_i (sigma_a,i - sigma_b,i)²
    expected = ((mu_a - mu_b) ** 2).sum() + ((var_a.sqrt() - var_b.sqrt()) ** 2).sum()
    assert frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-10)


def test_trace_term_equals_eigenvalues_of_the_nonsymmetric_product():
    sa, sb = _spd(12, 2), _spd(12, 3)
    mu = torch.zeros(12, dtype=torch.float64)
    d2 = frechet_distance(GaussianStats(mu, sa), GaussianStats(mu, sb))
    # tr sqrt(Sa Sb): the eigenvalues of Sa Sb are real and positive for SPD Sa, Sb
    eig = torch.linalg.eigvals(sa @ sb).real.clamp(min=0).sqrt().sum()
    assert d2 == pytest.approx(float(sa.trace() + sb.trace() - 2 * eig), rel=1e-8)


def test_frechet_distance_is_symmetric_and_stable_for_singular_covariances():
    f = torch.randn(50, 4, dtype=torch.float64) @ torch.randn(4, 32, dtype=torch.float64)
    a = GaussianStats.of(f)  # rank 4 in 32 dimensions
    b = GaussianStats.of(f + 0.5)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    # a pure mean shift; sqrt of ~1e-15 eigenvalues of the null space costs ~1e-6
    assert frechet_distance(a, b) == pytest.approx(32 * 0.25, rel=1e-5)


def test_kid_is_near_zero_for_two_halves_and_positive_for_a_shift():
    x = torch.randn(2000, 32, generator=torch.Generator().manual_seed(0))
    kid, std = kernel_inception_distance(x[:1000], x[1000:], subsets=50, subset_size=500)
    assert abs(kid) < max(3 * std, 1e-3)
    shifted, _ = kernel_inception_distance(x[:1000], x[1000:] + 0.5, subsets=50, subset_size=500)
    assert shifted > 10 * max(std, 1e-4)


def test_kid_is_unbiased_on_average():
    # E[unbiased MMD²] = 0 for samples of one distribution: the mean over many draws is ~0.
    g = torch.Generator().manual_seed(1)
    vals = [
        kernel_inception_distance(torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g),
                                  subsets=1)[0]
        for _ in range(200)
    ]  # fmt: skip
    t = torch.tensor(vals)
    assert abs(float(t.mean())) < 3 * float(t.std()) / math.sqrt(len(vals))


def test_inception_score_bounds():
    k = 10
    confident = torch.full((1000, k), -30.0)
    confident[torch.arange(1000), torch.arange(1000) % k] = 30.0
    assert inception_score(confident)[0] == pytest.approx(k, rel=1e-6)
    one_class = torch.zeros(1000, k)
    one_class[:, 3] = 30.0
    assert inception_score(one_class)[0] == pytest.approx(1.0, abs=1e-6)
    uniform = torch.zeros(1000, k)
    assert inception_score(uniform)[0] == pytest.approx(1.0, abs=1e-9)


def test_precision_recall_same_and_disjoint_distributions():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(600, 8, generator=g)
    p, r = precision_recall(real, torch.randn(600, 8, generator=g))
    assert p > 0.8 and r > 0.8
    p, r = precision_recall(real, torch.randn(600, 8, generator=g) + 20)
    assert p == 0.0 and r == 0.0
    # a collapsed generator: high precision (all samples look real), low recall
    collapsed = real[:20].repeat(30, 1) + 0.01 * torch.randn(600, 8, generator=g)
    p, r = precision_recall(real, collapsed)
    assert p > 0.9 and r < 0.3


def test_class_accuracy_per_class():
    logits = torch.eye(3)[[0, 1, 2, 0, 0]]
    labels = torch.tensor([0, 1, 1, 0, 2])
    acc = class_accuracy(logits, labels, 3)
    assert acc["all"] == pytest.approx(3 / 5)
    assert acc["0"] == 1.0 and acc["1"] == 0.5 and acc["2"] == 0.0
