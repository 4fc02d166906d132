"""LPIPS through the lpips package, with a randomly initialised AlexNet backbone saved the
way torchvision saves its ImageNet weights (the real file is never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("lpips")

from diffkit.errors import CheckpointError, ConfigError
from diffkit.eval.lpips import BACKBONE_FILES, backbone_keys, build_lpips, load_lpips
from tests.eval.util import alex_backbone


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory) -> Path:
    return alex_backbone(tmp_path_factory.mktemp("hub") / BACKBONE_FILES["alex"])


@pytest.fixture(scope="module")
def metric(alex_file: Path):
    return load_lpips("alex", alex_file)


def images(n: int, size: int = 64, channels: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


def test_distance_is_a_symmetric_premetric(metric):
    a, b = images(5), images(5, seed=1)
    d = metric.distance(a, b)
    assert d.shape == (5,) and bool((d > 0).all())
    torch.testing.assert_close(metric.distance(b, a), d, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(metric.distance(a, a), torch.zeros(5), rtol=0, atol=1e-6)


def test_equals_the_package_with_the_same_backbone(metric, alex_file: Path):
    from torchvision.models import alexnet

    reference = build_lpips("alex")
    tv = alexnet(weights=None)
    state = torch.load(alex_file, weights_only=True)
    tv.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                 if k.startswith("features.")})  # fmt: skip
    for module in reference.net.children():  # slice1..5 hold features[i] as "i"
        for index, layer in module.named_children():
            assert type(layer) is type(tv.features[int(index)])
            layer.load_state_dict(tv.features[int(index)].state_dict())
    a, b = images(4), images(4, seed=1)
    x, y = (t.float() / 127.5 - 1 for t in (a, b))
    with torch.no_grad():
        theirs = reference(x, y).flatten()
    torch.testing.assert_close(metric.distance(a, b), theirs, rtol=1e-5, atol=1e-6)


def test_small_gray_images_are_upsampled_to_64(metric):
    a, b = images(3, size=28, channels=1), images(3, size=28, channels=1, seed=1)
    big = [F.interpolate((t.float() / 127.5 - 1).expand(-1, 3, -1, -1), size=(64, 64),
                         mode="bilinear", align_corners=False) for t in (a, b)]  # fmt: skip
    torch.testing.assert_close(metric.distance(a, b), metric.distance(*big), rtol=1e-5, atol=1e-6)
    assert metric.about()["min_size"] == 64


def test_diversity_uses_disjoint_pairs(metric):
    same = images(1).expand(6, -1, -1, -1)
    assert metric.diversity(same) == {"mean": pytest.approx(0, abs=1e-6), "std": pytest.approx(
        0, abs=1e-6), "pairs": 3}  # fmt: skip
    varied = metric.diversity(images(9), pairs=2, seed=3)
    assert varied["pairs"] == 2 and varied["mean"] > 0
    assert metric.diversity(images(9), pairs=2, seed=3) == varied  # seeded
    with pytest.raises(ConfigError, match="at least 2 images"):
        metric.diversity(images(1))


def test_backbone_keys_keep_torchvision_indices():
    keys = backbone_keys(build_lpips("alex"))
    assert keys["features.0.weight"] == "slice1.0.weight"
    assert keys["features.10.bias"] == "slice5.10.bias"
    assert len(keys) == 10  # five convolutions, weight and bias each


def test_missing_or_wrong_backbone_files_are_one_line_errors(tmp_path: Path, alex_file: Path):
    with pytest.raises(ConfigError, match=r"alexnet-owt-7be5be79\.pth.*never downloads"):
        load_lpips("alex", tmp_path / "none.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(CheckpointError, match="does not hold torchvision's alex backbone"):
        load_lpips("alex", wrong)
    state = torch.load(alex_file, weights_only=True)
    state["features.0.weight"] = torch.zeros(8, 3, 3, 3)
    torch.save(state, wrong)
    with pytest.raises(CheckpointError, match="shapes do not match"):
        load_lpips("alex", wrong)
    pickled = tmp_path / "pickled.pth"
    torch.save({"x": object()}, pickled)
    with pytest.raises(CheckpointError, match="not a plain torch state dict"):
        load_lpips("alex", pickled)
    with pytest.raises(ConfigError, match="unknown LPIPS network"):
        load_lpips("squeeze", alex_file)  # type: ignore[arg-type]
