"""--hint SPEC: files, folders, dataset ranges and given edge maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffkit.config.run import HintConfig
from diffkit.data.edges import canny
from diffkit.data.hints import HintError, load_hints


def test_dataset_ranges_files_and_folders(data_dir: Path, tmp_path: Path):
    shape = (1, 28, 28)
    hints = load_hints("mnist:test:3..5", shape, HintConfig(), data_dir)
    assert len(hints) == 3 and hints.labels.tolist() == [0, 4, 1]
    assert torch.equal(hints.maps, canny(hints.images.float() / 127.5 - 1))
    assert len(load_hints("mnist:test:7", shape, HintConfig(), data_dir)) == 1
    digit = hints.images[0, 0].numpy()
    Image.fromarray(digit).save(tmp_path / "b.png")
    Image.fromarray(255 - digit).save(tmp_path / "a.png")
    folder = load_hints(str(tmp_path), shape, HintConfig(kind="sobel"), data_dir)
    assert (
        len(folder) == 2
        and folder.labels is None
        and torch.equal(folder.images[1], hints.images[0])
    )
    edges = load_hints(str(tmp_path / "b.png"), shape, HintConfig(), data_dir, is_edges=True)
    assert edges.images is None and torch.allclose(edges.maps[0, 0], torch.from_numpy(digit) / 255)


def test_rgb_gray_edge_maps_are_accepted(tmp_path: Path, data_dir: Path):
    gray = np.random.default_rng(0).integers(0, 2, (28, 28), dtype=np.uint8) * 255
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "rgb.png")
    hints = load_hints(str(tmp_path / "rgb.png"), (1, 28, 28), HintConfig(), data_dir,
                       is_edges=True)  # fmt: skip
    assert hints.maps.shape == (1, 1, 28, 28) and set(hints.maps.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(HintError, match="unknown dataset"):
        load_hints("nosuch:test:0", (1, 28, 28), HintConfig(), data_dir)
