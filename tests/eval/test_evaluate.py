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


def _shards(folder: Path, sizes, shape=(1, 4, 4), labels: bool = True) -> torch.Tensor:
    """Write ``samples-00000.safetensors``, ... (float then uint8, alternating); returns the
    images they hold as uint8, in order."""
    from safetensors.torch import save_file

    from diffkit.data.loader import to_uint8

    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, n in enumerate(sizes):
        x = torch.rand(n, *shape) * 2 - 1
        parts.append(to_uint8(x))
        tensors = {"samples": x if i % 2 == 0 else to_uint8(x)}
        if labels:
            tensors["labels"] = torch.full((n,), i)
        save_file(tensors, str(folder / f"samples-{i:05d}.safetensors"))
    return torch.cat(parts)


def test_load_samples_reads_shards_in_order(tmp_path: Path):
    want = _shards(tmp_path, [4, 3, 5])
    images, labels, file = load_samples(tmp_path)
    assert images.dtype == torch.uint8 and torch.equal(images, want)
    assert labels.tolist() == [0] * 4 + [1] * 3 + [2] * 5
    assert file == tmp_path / "samples-00000.safetensors"
    few, few_labels, _ = load_samples(tmp_path, limit=6)
    assert torch.equal(few, want[:6]) and few_labels.tolist() == [0] * 4 + [1] * 2


def test_load_samples_reads_one_shard_or_the_legacy_file(tmp_path: Path):
    from safetensors.torch import save_file

    want = _shards(tmp_path / "s", [4, 3], labels=False)
    images, labels, file = load_samples(tmp_path / "s" / "samples-00001.safetensors")
    assert torch.equal(images, want[4:]) and labels is None and file.name.endswith("1.safetensors")
    legacy = torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8)
    save_file({"samples": legacy}, str(tmp_path / "samples.safetensors"))
    images, labels, file = load_samples(tmp_path)
    assert torch.equal(images, legacy) and labels is None and file.name == "samples.safetensors"


def test_load_samples_rejects_inconsistent_shards(tmp_path: Path):
    from safetensors.torch import save_file

    from diffkit.config.resolve import ConfigError

    _shards(tmp_path / "a", [4, 3])
    save_file(
        {"samples": torch.zeros(2, 1, 5, 5)}, str(tmp_path / "a" / "samples-00002.safetensors")
    )
    with pytest.raises(ConfigError, match=r"samples-00002.* shape \(1, 5, 5\).* \(1, 4, 4\)"):
        load_samples(tmp_path / "a")
    _shards(tmp_path / "b", [4])
    save_file(
        {"samples": torch.zeros(2, 1, 4, 4)}, str(tmp_path / "b" / "samples-00001.safetensors")
    )
    with pytest.raises(ConfigError, match="some shards have 'labels'"):
        load_samples(tmp_path / "b")
    save_file({"samples": torch.zeros(2, 1, 4, 4), "labels": torch.tensor([0.5, 1.0])},
              str(tmp_path / "f.safetensors"))  # fmt: skip
    with pytest.raises(ConfigError, match="integer class indices"):
        load_samples(tmp_path / "f.safetensors")
    (tmp_path / "c").mkdir()
    with pytest.raises(ConfigError, match=r"no samples-\*.safetensors"):
        load_samples(tmp_path / "c")
    (tmp_path / "c" / "samples-00000.safetensors").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="cannot read samples"):
        load_samples(tmp_path / "c")


def test_load_samples_checks_memory_before_allocating(tmp_path: Path, monkeypatch):
    import diffkit.resources
    from diffkit.resources import ResourceError

    _shards(tmp_path, [8, 8])  # 16 images of 16 bytes
    monkeypatch.setattr(diffkit.resources, "available_memory", lambda: 200)
    with pytest.raises(ResourceError, match="reading 16 samples"):
        load_samples(tmp_path)
    assert len(load_samples(tmp_path, limit=12)[0]) == 12  # 192 bytes fit
