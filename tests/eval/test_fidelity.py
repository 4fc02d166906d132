"""The torch-fidelity backend (``--features tf-inception``): its Frechet distance against
diffkit's and the closed form, and its TF-Inception from a local file (random weights here:
the real file is never downloaded)."""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from diffkit.errors import CheckpointError, ConfigError, DependencyError
from diffkit.eval.features import TF_INCEPTION_URL, load_extractor, load_tf_inception
from diffkit.eval.metrics import GaussianStats, frechet_distance

fidelity = pytest.importorskip("torch_fidelity")
from diffkit.eval.fidelity import fidelity_frechet_distance  # noqa: E402


def test_diagonal_gaussians_match_the_closed_form():
    """For diagonal covariances d² = ‖μa − μb‖² + Σ (σa_i − σb_i)²."""
    gen = torch.Generator().manual_seed(0)
    mu_a, mu_b = torch.randn(32, generator=gen).double(), torch.randn(32, generator=gen).double()
    sd_a = torch.rand(32, generator=gen).double() + 0.1
    sd_b = torch.rand(32, generator=gen).double() * 3 + 0.1
    a = GaussianStats(mu_a, torch.diag(sd_a**2))
    b = GaussianStats(mu_b, torch.diag(sd_b**2))
    closed = float(((mu_a - mu_b) ** 2).sum() + ((sd_a - sd_b) ** 2).sum())
    assert fidelity_frechet_distance(a, b) == pytest.approx(closed, rel=1e-10)
    assert frechet_distance(a, b) == pytest.approx(closed, rel=1e-10)
    assert fidelity_frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def _features(mu: torch.Tensor, mix: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n samples of N(mu, mix mixᵀ), float32 like extracted features: (n, D)."""
    z = torch.randn(n, mu.shape[0], generator=torch.Generator().manual_seed(seed))
    return (z @ mix.T + mu).float()


def test_torch_fidelity_agrees_with_diffkit_on_the_same_features():
    """Known different means and full covariances; the two formulas (eigenvalues of Σa Σb
    vs of the symmetric Σa^½ Σb Σa^½) agree on the same statistics, and both approach the
    population value as n grows."""
    d = 24
    gen = torch.Generator().manual_seed(1)
    mix_a = torch.randn(d, d, generator=gen) / d**0.5
    mix_b = torch.randn(d, d, generator=gen) / d**0.5 + torch.eye(d)
    mu_a, mu_b = torch.zeros(d), torch.full((d,), 0.5)
    a = GaussianStats.of(_features(mu_a, mix_a, 20000, 2))
    b = GaussianStats.of(_features(mu_b, mix_b, 20000, 3))
    ours, theirs = frechet_distance(a, b), fidelity_frechet_distance(a, b)
    assert theirs == pytest.approx(ours, rel=1e-8)
    exact_a = GaussianStats(mu_a.double(), (mix_a @ mix_a.T).double())
    exact_b = GaussianStats(mu_b.double(), (mix_b @ mix_b.T).double())
    population = frechet_distance(exact_a, exact_b)
    assert fidelity_frechet_distance(exact_a, exact_b) == pytest.approx(population, rel=1e-8)
    assert ours == pytest.approx(population, rel=0.05)  # sampling error only


class _Given(torch.nn.Module):
    """A "feature network" for torchmetrics that returns its input: the features given."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_torchmetrics_fid_agrees_on_the_same_features():
    """torchmetrics' FrechetInceptionDistance, fed the features themselves, gives the FID
    that torch-fidelity's formula and diffkit's give from diffkit's statistics."""
    pytest.importorskip("torchmetrics")
    from torchmetrics.image.fid import FrechetInceptionDistance

    d = 16
    gen = torch.Generator().manual_seed(4)
    mix = torch.randn(d, d, generator=gen) / d**0.5 + 0.5 * torch.eye(d)
    real = _features(torch.zeros(d), torch.eye(d), 3000, 5)
    fake = _features(torch.full((d,), 0.3), mix, 2000, 6)
    metric = FrechetInceptionDistance(feature=_Given(d))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    theirs = float(metric.compute())
    a, b = GaussianStats.of(fake), GaussianStats.of(real)
    assert fidelity_frechet_distance(a, b) == pytest.approx(theirs, rel=1e-5)
    assert frechet_distance(a, b) == pytest.approx(theirs, rel=1e-5)


@pytest.fixture(scope="module")
def tf_weights(tmp_path_factory) -> Path:
    """A state dict of torch-fidelity's InceptionV3 with its random initial weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = tmp_path_factory.mktemp("tf") / "weights.pth"
    torch.save({}, path)
    torch.manual_seed(0)
    with mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, state: None):
        net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                          feature_extractor_weights_path=str(path))  # fmt: skip
    torch.save(net.state_dict(), path)
    return path


def test_tf_inception_from_a_local_file(tf_weights: Path):
    ex = load_extractor("tf-inception", "mnist", Path("unused"), tf_inception_weights=tf_weights)
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)  # gray: repeated to RGB
    feats, logits = ex(images)  # ~2 s on a busy 2-core CPU: one call only
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(feats).all() and not torch.equal(feats[0], feats[1])
    about = ex.about()
    assert about["kind"] == "tf-inception" and about["fid_backend"] == "torch-fidelity"
    assert about["path"] == str(tf_weights) and len(about["sha256"]) == 64
    a, b = GaussianStats.of(torch.randn(50, 4)), GaussianStats.of(torch.randn(50, 4) + 1)
    assert ex.frechet(a, b) == pytest.approx(frechet_distance(a, b), rel=1e-8)


def test_tf_inception_features_equal_torchmetrics_own(tf_weights: Path):
    """torchmetrics' FID network, built from the same weights file, sees the same RGB
    uint8 images as the same 2048 features: diffkit passes them through untouched."""
    pytest.importorskip("torchmetrics")
    from torchmetrics.image.fid import NoTrainInceptionV3

    ex = load_tf_inception(tf_weights)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    theirs = NoTrainInceptionV3("inception-v3-compat", ["2048"],
                                feature_extractor_weights_path=str(tf_weights))(images)  # fmt: skip
    torch.testing.assert_close(ex(images)[0], theirs.float(), rtol=1e-5, atol=1e-6)


def test_missing_weights_name_the_path_and_where_to_get_them(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_tf_inception(tmp_path / "none.pth")
    assert str(tmp_path / "none.pth") in str(info.value) and TF_INCEPTION_URL in str(info.value)
    assert "never downloads" in str(info.value)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"fc.weight": torch.zeros(2, 2)}, "TF-Inception weights"),
        ({"net": torch.nn.Linear(2, 2)}, "not a plain torch state dict"),
    ],
)
def test_wrong_or_unsafe_files_are_refused(tmp_path: Path, obj, message):
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=message):
        load_tf_inception(path)


def test_without_torch_fidelity_the_error_names_the_extra(monkeypatch, tf_weights: Path):
    for name in [m for m in sys.modules if m.startswith("torch_fidelity")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    with pytest.raises(DependencyError, match=r"diffkit\[fid\]"):
        load_tf_inception(tf_weights)
