"""Metric behaviour on real images with a trained feature classifier."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from diffkit.config.run import DataConfig
from diffkit.config.settings import Settings
from diffkit.data.registry import load_dataset
from diffkit.eval.evaluate import Evaluator, load_samples
from diffkit.eval.features import load_classifier


@pytest.fixture(scope="module")
def evaluator(quick_classifier, tmp_path_factory, data_dir: Path) -> Evaluator:
    settings = Settings(
        runs_dir=tmp_path_factory.mktemp("runs"), data_dir=data_dir, download=False,
        cache_dir=tmp_path_factory.mktemp("cache"),
    )  # fmt: skip
    ex = load_classifier(quick_classifier.run.path)
    return Evaluator("mnist", ex, settings, kid_subsets=20)


@pytest.fixture(scope="module")
def real(data_dir: Path) -> torch.Tensor:
    """2000 training images as float in [-1, 1]."""
    images = load_dataset(DataConfig(dataset="mnist", limit=2000), data_dir, "train").images
    return images.float() / 127.5 - 1


def test_fid_rises_monotonically_with_noise(evaluator: Evaluator, real: torch.Tensor):
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=g)
    fids = [evaluator.score_images((real + s * noise).clamp(-1, 1))["fid"]
            for s in (0.0, 0.1, 0.25, 0.5, 1.0)]  # fmt: skip
    assert all(a < b for a, b in itertools.pairwise(fids)), fids


def test_fid_rises_monotonically_with_blur(evaluator: Evaluator, real: torch.Tensor):
    fids = [evaluator.score_images(real)["fid"]]
    for sigma in (0.6, 1.0, 1.5, 2.5):
        fids.append(evaluator.score_images(gaussian_blur(real, [9, 9], [sigma, sigma]))["fid"])
    assert all(a < b for a, b in itertools.pairwise(fids)), fids


def test_kid_of_two_halves_of_the_test_set_is_about_zero(evaluator: Evaluator):
    from diffkit.eval.metrics import kernel_inception_distance

    # random halves: MNIST's test set is ordered (its first 5000 digits are the cleaner ones)
    f = evaluator.reference.features
    f = f[torch.randperm(len(f), generator=torch.Generator().manual_seed(0))]
    kid, std = kernel_inception_distance(f[:5000], f[5000:], subsets=20)
    assert abs(kid) < max(3 * std, 2e-3), (kid, std)


def test_floor_is_close_to_real_and_below_noisy_samples(evaluator: Evaluator, real):
    floor = evaluator.floor(1000)
    noisy = evaluator.score_images((real[:1000] + 0.5 * torch.randn_like(real[:1000])).clamp(-1, 1))
    assert floor["n"] == noisy["n"] == 1000
    assert floor["fid"] < noisy["fid"] and floor["kid"] < noisy["kid"]
    assert floor["is"] > noisy["is"] and floor["precision"] > noisy["precision"]


def test_reference_features_are_cached(evaluator: Evaluator, monkeypatch):
    import diffkit.eval.reference as reference

    def fail(*args, **kwargs):
        raise AssertionError("reference features recomputed instead of read from the cache")

    monkeypatch.setattr(reference, "extract", fail)
    again = Evaluator("mnist", evaluator.extractor, evaluator.settings)
    torch.testing.assert_close(again.reference.features, evaluator.reference.features)
    files = list((evaluator.settings.cache_dir / "eval").glob("mnist-test-all-classifier-*"))
    assert len(files) == 1 and evaluator.extractor.digest[:16] in files[0].name


def test_class_accuracy_on_labelled_real_images(evaluator: Evaluator, data_dir: Path):
    data = load_dataset(DataConfig(dataset="mnist", limit=500), data_dir, "test")
    scores = evaluator.score_images(data.images, data.labels)
    assert scores["class_accuracy"]["all"] > 0.9
    assert set(scores["class_accuracy"]) == {"all", *map(str, range(10))}


def test_load_samples_accepts_float_and_uint8(tmp_path: Path):
    from safetensors.torch import save_file

    x = torch.rand(12, 1, 28, 28) * 2 - 1
    save_file({"samples": x, "labels": torch.arange(12)}, str(tmp_path / "samples.safetensors"))
    images, labels, file = load_samples(tmp_path)
    assert images.dtype == torch.uint8 and images.shape == x.shape
    assert labels.tolist() == list(range(12)) and file.name == "samples.safetensors"
