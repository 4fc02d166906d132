"""Edge maps against closed forms: the Sobel magnitude of a step, the Canny map of a
filled square (its one-pixel inner outline)."""

from __future__ import annotations

import pytest
import torch

from diffkit.data.edges import canny, sobel


def step(height: float = 1.0, size: int = 12, at: int = 6) -> torch.Tensor:
    """A vertical step in intensity from 0 to ``height`` (image units -1 -> 2 height - 1)."""
    x = -torch.ones(1, 1, size, size)
    x[..., at:] = 2 * height - 1
    return x


def square(size: int = 28, lo: int = 8, hi: int = 20) -> torch.Tensor:
    x = -torch.ones(1, 3, size, size)  # RGB: edges are taken on the channel mean
    x[..., lo:hi, lo:hi] = 1
    return x


@pytest.mark.parametrize("height", [1.0, 0.5, 0.25])
def test_sobel_of_a_step_is_its_height_beside_it(height: float):
    want = torch.zeros(12)
    want[5:7] = height  # the two columns beside the step, every row (replicated border)
    torch.testing.assert_close(sobel(step(height))[0, 0], want.expand(12, 12))


def test_canny_of_a_filled_square_is_its_inner_outline():
    lo, hi = 8, 20
    want = torch.zeros(28, 28)
    want[lo:hi, lo:hi] = 1
    want[lo + 1 : hi - 1, lo + 1 : hi - 1] = 0  # the ring of pixels just inside the edge
    for sigma in (0.0, 1.0, 1.5):
        torch.testing.assert_close(canny(square(), sigma=sigma)[0, 0], want)


def test_canny_thresholds_and_hysteresis():
    assert canny(torch.zeros(2, 1, 16, 16)).sum() == 0  # nothing to find
    faint = step(0.05)
    assert canny(faint, sigma=0).sum() == 0  # below the low threshold
    assert canny(faint, low=0.01, high=0.02, sigma=0)[0, 0, :, 6].eq(1).all()
    # A step whose strength fades along the edge: hysteresis keeps the weak part that
    # touches the strong part, a lone weak edge is dropped.
    x = -torch.ones(1, 1, 16, 16)
    x[..., 8:] = torch.linspace(1.0, -0.7, 16)[:, None]  # heights 1 -> 0.15 down the edge
    edges = canny(x, low=0.1, high=0.6, sigma=0)[0, 0, :, 8]
    assert edges.sum() == 16  # all of it: the weak rows connect to the strong ones
    assert canny(x, low=0.5, high=0.6, sigma=0)[0, 0, :, 8].sum() < 16
    with pytest.raises(ValueError, match="low <= high"):
        canny(x, low=0.5, high=0.2)


def test_edge_maps_are_batched_and_in_range():
    x = torch.rand(3, 3, 20, 20) * 2 - 1
    s, c = sobel(x), canny(x)
    assert s.shape == c.shape == (3, 1, 20, 20)
    assert float(s.min()) >= 0 and float(s.max()) <= 1 and set(c.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(canny(x[1:2]), c[1:2])  # each image on its own


def test_edge_f1_tolerates_one_pixel_and_pools_pixels():
    from diffkit.data.edges import edge_f1

    target = torch.zeros(1, 1, 9, 9)
    target[..., 4, 2:7] = 1  # a horizontal line of 5 pixels
    shifted = torch.roll(target, 1, dims=-2)  # one pixel down
    assert edge_f1(target, target) == (1.0, 1.0, 1.0)
    assert edge_f1(shifted, target) == (1.0, 1.0, 1.0)
    assert edge_f1(shifted, target, tolerance=0)[2] == 0.0
    half = target.clone()
    half[..., 4, 5:7] = 0  # 3 of 5 kept; pixel 5 is within a pixel of 4, pixel 6 is not
    p, r, f1 = edge_f1(half, target)
    assert (p, r) == (1.0, 0.8) and abs(f1 - 1.6 / 1.8) < 1e-12
    assert edge_f1(half, target, tolerance=0)[1] == 0.6
    assert edge_f1(torch.zeros_like(target), torch.zeros_like(target)) == (1.0, 1.0, 1.0)


def test_edge_maps_batches_uint8_and_float_images_alike():
    from diffkit.data.edges import edge_maps

    images = torch.randint(0, 256, (7, 1, 16, 16), dtype=torch.uint8)
    floats = images.float() / 127.5 - 1
    for kind in ("canny", "sobel"):
        a = edge_maps(images, kind, batch_size=3)
        assert a.shape == (7, 1, 16, 16) and torch.allclose(a, edge_maps(floats, kind))
