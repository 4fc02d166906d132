"""``folder:PATH`` datasets: flat (unlabelled) or one subfolder per class (labelled), and
the class names a run records so that it keeps them when the folder moves."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffkit.config import DataConfig
from diffkit.data import DataError, load_dataset
from diffkit.data.registry import class_names, class_names_of, with_class_names


def _cfg(folder: Path, **kw) -> DataConfig:
    return DataConfig(dataset=f"folder:{folder}", image_size=16, channels=3, **kw)


def _solid(path: Path, rgb: tuple[int, int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), rgb).convert(mode).save(path)


def _two_classes(root: Path) -> None:
    """cat: a PNG, a JPEG, a corrupt file, a palette image, a nested one; dog: RGBA, 16-bit
    gray, 8-bit gray; hidden files and folders everywhere, a note beside the classes."""
    _solid(root / "cat" / "a.png", (200, 10, 10))
    _solid(root / "cat" / "b.jpg", (10, 200, 10))
    (root / "cat" / "c.png").write_bytes(b"\x89PNG not really")
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 10, 10, 200])  # index 1 -> (10, 10, 200)
    palette.save(root / "cat" / "d.png")
    _solid(root / "cat" / "deeper" / "e.png", (50, 60, 70))
    (root / "dog").mkdir()
    Image.new("RGBA", (16, 16), (30, 40, 50, 128)).save(root / "dog" / "f.png")
    Image.fromarray(np.full((16, 16), 32768, dtype=np.uint16)).save(root / "dog" / "g.png")
    _solid(root / "dog" / "h.png", (90, 90, 90), mode="L")
    _solid(root / "dog" / ".hidden.png", (1, 2, 3))
    _solid(root / "dog" / ".thumbs" / "t.png", (1, 2, 3))
    _solid(root / ".git" / "objects" / "i.png", (1, 2, 3))  # a hidden would-be class
    (root / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()  # no images: not a class


def test_class_folders_are_labelled(tmp_path: Path):
    _two_classes(tmp_path)
    data = load_dataset(_cfg(tmp_path), tmp_path)
    assert data.class_names == ("cat", "dog")
    assert data.labels.tolist() == [0, 0, 0, 0, 1, 1, 1]  # cat: a, b, d, deeper/e; dog: f, g, h
    assert data.images.shape == (7, 3, 16, 16) and data.images.dtype == torch.uint8
    assert data.skipped == 1 and data.empty_classes == ()
    px = data.images[:, :, 8, 8].tolist()  # the centre pixel of each image
    assert px[0] == [200, 10, 10] and px[2] == [10, 10, 200] and px[3] == [50, 60, 70]
    assert all(abs(a - b) <= 3 for a, b in zip(px[1], [10, 200, 10], strict=True))  # JPEG
    assert px[4] == [30, 40, 50]  # RGBA: the colour, alpha dropped
    assert px[5] == [128, 128, 128]  # 16-bit 32768 scaled, not clipped to 255
    assert px[6] == [90, 90, 90]


def test_gray_channels_of_a_labelled_folder(tmp_path: Path):
    _two_classes(tmp_path)
    data = load_dataset(_cfg(tmp_path).model_copy(update={"channels": 1}), tmp_path)
    assert data.images.shape == (7, 1, 16, 16) and data.images[5, 0, 0, 0] == 128


def test_class_names_scan_decodes_nothing(tmp_path: Path, monkeypatch):
    _two_classes(tmp_path)

    def no_decoding(*args, **kwargs):
        raise AssertionError("class_names opened an image")

    monkeypatch.setattr(Image, "open", no_decoding)
    assert class_names(f"folder:{tmp_path}") == ("cat", "dog")


def test_flat_folder_stays_unlabelled(tmp_path: Path):
    for i in range(3):
        _solid(tmp_path / f"{i}.png", (i, 0, 0))
    _solid(tmp_path / ".hidden.png", (9, 9, 9))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("no images here")
    data = load_dataset(_cfg(tmp_path), tmp_path)
    assert data.labels is None and data.class_names == () and len(data) == 3
    assert data.images[:, 0, 0, 0].tolist() == [0, 1, 2]
    assert class_names(f"folder:{tmp_path}") == ()


def test_mixed_layout_is_refused_with_counts(tmp_path: Path):
    _two_classes(tmp_path)
    _solid(tmp_path / "stray.png", (1, 1, 1))
    _solid(tmp_path / "stray2.jpg", (1, 1, 1))
    message = r"2 image\(s\) directly in it and 2 class folder\(s\) with images \(cat, dog\)"
    with pytest.raises(DataError, match=message):
        load_dataset(_cfg(tmp_path), tmp_path)
    with pytest.raises(DataError, match=message):
        class_names(f"folder:{tmp_path}")


@pytest.mark.parametrize("hidden_only", [False, True])
def test_folder_without_images_errors(tmp_path: Path, hidden_only):
    if hidden_only:
        _solid(tmp_path / ".a.png", (1, 1, 1))
        _solid(tmp_path / ".cache" / "b.png", (1, 1, 1))
    with pytest.raises(DataError, match="no images"):
        load_dataset(_cfg(tmp_path), tmp_path)


def test_missing_folder_errors(tmp_path: Path):
    with pytest.raises(DataError, match="image folder not found"):
        load_dataset(_cfg(tmp_path / "nowhere"), tmp_path)
    with pytest.raises(DataError, match="image folder not found"):
        class_names(f"folder:{tmp_path / 'nowhere'}")


def test_an_unreadable_class_keeps_its_index(tmp_path: Path):
    _solid(tmp_path / "a" / "1.png", (1, 1, 1))
    (tmp_path / "b" / "broken").mkdir(parents=True)
    (tmp_path / "b" / "broken" / "2.png").write_bytes(b"garbage")
    _solid(tmp_path / "c" / "3.png", (3, 3, 3))
    data = load_dataset(_cfg(tmp_path), tmp_path)
    assert data.class_names == ("a", "b", "c") and data.labels.tolist() == [0, 2]
    assert data.empty_classes == ("b",) and data.skipped == 1


def test_limit_keeps_names_and_counts(tmp_path: Path):
    _two_classes(tmp_path)
    data = load_dataset(_cfg(tmp_path, limit=2), tmp_path)
    assert len(data) == 2 and data.labels.tolist() == [0, 0]
    assert data.class_names == ("cat", "dog") and data.skipped == 1


def test_recorded_names_outlive_the_folder(tmp_path: Path):
    folder = tmp_path / "pets"
    _two_classes(folder)
    cfg = _cfg(folder)
    data = load_dataset(cfg, tmp_path)
    recorded = with_class_names(cfg, data)
    assert recorded.class_names == ("cat", "dog") and class_names_of(cfg) == ()
    # through a run's config.json and back
    stored = DataConfig.model_validate_json(recorded.model_dump_json())
    shutil.rmtree(folder)
    assert class_names_of(stored) == ("cat", "dog")


def test_a_folder_whose_classes_changed_is_refused(tmp_path: Path):
    _two_classes(tmp_path)
    recorded = _cfg(tmp_path, class_names=("cat", "dog"))
    assert len(load_dataset(recorded, tmp_path)) == 7
    _solid(tmp_path / "bird" / "z.png", (5, 5, 5))
    with pytest.raises(DataError, match=r"now has classes bird, cat, dog; the run was trained "
                                        r"with cat, dog"):  # fmt: skip
        load_dataset(recorded, tmp_path)


def test_built_in_names_are_not_recorded():
    from diffkit.data.registry import ImageData

    cfg = DataConfig(dataset="mnist")
    data = ImageData(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), torch.zeros(1), ("0",) * 10)
    assert with_class_names(cfg, data) is cfg
    assert class_names_of(cfg) == tuple(str(i) for i in range(10))


def test_old_configs_load_and_names_are_checked():
    old = {"dataset": "mnist", "limit": None, "image_size": 32, "channels": 3}
    assert DataConfig.model_validate(old).class_names is None
    with pytest.raises(ValueError, match="distinct"):
        DataConfig(dataset="folder:x", class_names=("a", "a"))
