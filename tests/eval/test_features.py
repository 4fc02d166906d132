"""Feature networks: the classifier recipe, its file format, InceptionV3 from local weights."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffkit.config.resolve import ConfigError
from diffkit.eval.features import (
    extract,
    find_classifier,
    load_classifier,
    load_extractor,
    load_inception,
    tensor_digest,
)
from diffkit.runs.checkpoint import CheckpointError


def test_classifier_trains_and_records_its_recipe(quick_classifier):
    res = quick_classifier
    assert res.train.reason == "finished"
    assert res.test_accuracy > 0.9  # 4k images, 2 epochs; the full recipe is a benchmark
    summary = json.loads(res.run.summary.read_text())
    assert summary["test_accuracy"] == res.test_accuracy and summary["sha256"] == res.digest
    ex = load_classifier(res.run.path)
    assert ex.digest == res.digest and ex.dataset == "mnist"
    assert ex.config["model"]["widths"] == [16, 32] and ex.config["train"]["epochs"] == 2
    assert ex.test_accuracy == pytest.approx(res.test_accuracy)


def test_features_are_deterministic_and_shaped(quick_classifier):
    ex = load_classifier(quick_classifier.run.path)
    images = torch.randint(0, 256, (7, 1, 28, 28), dtype=torch.uint8)
    f1, logits = extract(ex, images, batch_size=3)
    f2, _ = ex(images)
    assert f1.shape == (7, 128) and logits.shape == (7, 10)
    torch.testing.assert_close(f1, f2)
    with pytest.raises(ConfigError, match="do not fit"):
        ex(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def test_a_modified_classifier_is_rejected(quick_classifier, tmp_path: Path):
    src = quick_classifier.run.path / "classifier.safetensors"
    tensors = load_file(str(src))
    from safetensors import safe_open

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
    name = next(k for k in tensors if k.endswith("weight"))
    tensors[name] = tensors[name] + 1e-3
    bad = tmp_path / "classifier.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(CheckpointError, match="sha256"):
        load_classifier(bad)
    assert tensor_digest(tensors) != meta["diffkit.sha256"]


def test_find_classifier_by_dataset(quick_classifier):
    """The quick classifier (4000 images, ~95 %) is no feature network to pick by itself;
    named, it is used with a warning."""
    runs = quick_classifier.run.path.parent.parent
    with pytest.raises(ConfigError, match=r"data\.limit=4000"):
        find_classifier(runs, "mnist")
    with pytest.raises(ConfigError, match="diffkit train classifier --dataset fashion-mnist"):
        find_classifier(runs, "fashion-mnist")
    with pytest.raises(ConfigError, match="trained on mnist"):
        load_extractor("classifier", "fashion-mnist", runs, classifier=quick_classifier.run.path)
    ex = load_extractor("classifier", "mnist", runs, classifier=quick_classifier.run.path)
    assert ex.digest == quick_classifier.digest and "does not qualify" in ex.about()["warnings"][0]


def test_inception_needs_local_weights(tmp_path: Path):
    with pytest.raises(ConfigError, match="never downloads"):
        load_inception(tmp_path / "missing.pth")


def test_inception_from_a_local_state_dict(tmp_path: Path):
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path / "inception.pth"
    torch.save(net.state_dict(), path)
    ex = load_inception(path)
    feats, logits = ex(torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8))
    assert feats.shape == (2, 2048) and logits.shape == (2, 1000)
    assert len(ex.digest) == 64
    torch.save({"not": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError):
        load_inception(path)


class _Exploit:
    """Unpickling this with a plain ``pickle.load`` would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_inception_weights_that_are_not_a_state_dict_are_refused(tmp_path: Path):
    import os
    import pickle

    marker = tmp_path / "pwned"
    files = {
        "exploit.pth": pickle.dumps(_Exploit(marker)),
        "random.pth": os.urandom(4096),
        "empty.pth": b"",
        "zip.pth": b"PK\x03\x04" + os.urandom(64),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=f"InceptionV3 weights .*{name}") as err:
            load_inception(tmp_path / name)
        assert "\n" not in str(err.value) and "weights_only" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"x": torch.zeros(2)}, "do not match"),
        ([torch.zeros(2)], "state dict of named tensors"),
        ({"x": 5}, "state dict of named tensors"),
    ],
)
def test_inception_weights_of_the_wrong_kind_are_refused(tmp_path: Path, obj, message):
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=message):
        load_inception(path)


def test_find_classifier_skips_malformed_configs(tmp_path: Path):
    for i, text in enumerate(['["a list"]', '{"data": 5}', "{not json"]):
        run = tmp_path / "classifier" / f"r{i}"
        run.mkdir(parents=True)
        (run / "classifier.safetensors").write_bytes(b"")
        (run / "config.json").write_text(text)
    with pytest.raises(ConfigError, match="no feature classifier for mnist"):
        find_classifier(tmp_path, "mnist")


def test_extract_batches_and_reports_every_image():
    class Counting:
        name = "counting"
        batch_size = 4

        def __init__(self):
            self.sizes = []

        def __call__(self, images):
            self.sizes.append(images.shape[0])
            flat = images.flatten(1).float()  # (B, C*H*W)
            return flat[:, :3], flat[:, :2]

    calls = []

    @contextlib.contextmanager
    def track(label, total):
        done = []
        yield done.append
        calls.append((label, total, done))

    images = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8)
    ex = Counting()
    feats, logits = extract(ex, images, track=track, label="test split")
    assert ex.sizes == [4, 4, 2]  # the extractor's own batch size
    assert calls == [("test split (counting)", 10, [4, 4, 2])]
    torch.testing.assert_close(feats, images.flatten(1).float()[:, :3])
    assert logits.shape == (10, 2)
    extract(ex, images, batch_size=3)  # no track: nothing to report to
    assert ex.sizes[3:] == [3, 3, 3, 1]
