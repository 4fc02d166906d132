"""The classifier objective's augmentation."""

from __future__ import annotations

import torch

from diffkit.objectives.classify import random_shift


def test_random_shift_translates_each_image_by_its_own_offset():
    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, :, 4, 4] = 1.0  # one bright pixel in the middle
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    positions = set()
    for img in out[:, 0]:
        ys, xs = torch.nonzero(img == 1.0, as_tuple=True)
        assert len(ys) == 1 and abs(int(ys[0]) - 4) <= 2 and abs(int(xs[0]) - 4) <= 2
        positions.add((int(ys[0]), int(xs[0])))
    assert len(positions) > 10  # offsets differ between images
    assert set(out.unique().tolist()) == {-1.0, 1.0}  # padding is background


def test_zero_shift_is_identity():
    x = torch.randn(3, 2, 5, 5)
    assert torch.equal(random_shift(x, 0, torch.Generator()), x)
