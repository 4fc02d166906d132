"""Views invert exactly and are orthogonal; filters sum to the identity."""

from __future__ import annotations

import pytest
import torch

from diffkit.edit.filters import check_partition, gaussian_kernel, highpass, lowpass
from diffkit.edit.views import VIEWS, View, check_orthogonal, view


@pytest.mark.parametrize("name", list(VIEWS))
def test_every_view_inverts_exactly_and_is_orthogonal(name: str):
    v = view(name)
    x = torch.randn(3, 2, 8, 8)
    assert torch.equal(v.inverse(v.apply(x)), x)
    check_orthogonal(v, (2, 8, 8))
    noise = torch.randn(20000, 1, 8, 8)  # viewed unit noise stays unit noise
    assert abs(float(v.apply(noise).std()) - 1) < 0.01


def test_views_that_are_not_orthogonal_or_invertible_are_refused():
    with pytest.raises(ValueError, match="not orthogonal"):
        check_orthogonal(View("double", lambda x: 2 * x, lambda x: x / 2), (1, 4, 4))
    with pytest.raises(ValueError, match="no exact inverse"):
        check_orthogonal(View("blur", lowpass(1.0, 3), lambda x: x), (1, 8, 8))
    with pytest.raises(ValueError, match="pixel permutation or a negation"):
        view("blur")


def test_skew_rolls_each_column_and_jigsaw_moves_whole_pieces():
    from diffkit.edit.views import SKEW, jigsaw_labels

    x = torch.randn(1, 2, 12, 12)
    skewed = view("skew").apply(x)
    for i in range(12):  # column i rolled down by int(1.5 (i - 6)) rows
        assert torch.equal(skewed[..., i], x[..., i].roll(int(SKEW * (i - 6)), dims=-1))
    labels = jigsaw_labels(28)
    cells = torch.arange(16).view(4, 4)
    turned = torch.empty(16, dtype=torch.long)
    turned[cells.flatten()] = cells.rot90(1).flatten()  # where a quarter turn takes each cell
    assert torch.equal(labels.rot90(1), turned[labels])  # pieces rotate onto pieces
    assert len(labels.unique()) == 16 and (labels != (torch.arange(28) // 7).view(-1, 1) * 4
                                           + torch.arange(28) // 7).any()  # tabs  # fmt: skip
    moved = view("jigsaw").apply(labels[None, None].float())[0, 0].long()
    for piece in range(16):  # each piece arrives whole in one other piece's place
        assert len(moved[labels == piece].unique()) == 1
    with pytest.raises(ValueError, match="multiple of 4"):
        check_orthogonal(view("jigsaw"), (1, 30, 30))


def test_lowpass_and_highpass_sum_to_the_identity():
    x = torch.randn(2, 3, 16, 12)
    low, high = lowpass(2.0, 33), highpass(2.0, 33)
    torch.testing.assert_close(low(x) + high(x), x, atol=1e-6, rtol=0)
    check_partition([low, high], (3, 16, 12))
    const = torch.full((1, 1, 9, 9), 0.3)  # a blur keeps constants (normalised, reflected)
    torch.testing.assert_close(low(const), const)
    assert float(low(x).var()) < float(x.var()) / 4  # and removes most white noise
    with pytest.raises(ValueError, match="do not sum"):
        check_partition([low, low], (1, 8, 8))


def test_kernel_is_normalised_and_validated():
    k = gaussian_kernel(1.5, 7)
    assert k.shape == (7,) and abs(float(k.sum()) - 1) < 1e-12 and torch.equal(k, k.flip(0))
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel(1.0, 4)


def test_bands_and_the_colour_split_sum_to_the_identity():
    from diffkit.edit.filters import bands, color_split, gray

    parts = bands([4.0, 1.0], 17)
    assert len(parts) == 3
    check_partition(parts, (1, 20, 20))
    const = torch.full((1, 1, 9, 9), 0.3)  # a constant is all coarse band
    torch.testing.assert_close(parts[0](const), const)
    torch.testing.assert_close(parts[1](const) + parts[2](const), torch.zeros_like(const))
    check_partition(color_split(), (3, 8, 8))
    x = torch.randn(2, 3, 5, 5)
    assert torch.allclose(gray(x - gray(x)), torch.zeros_like(x), atol=1e-6)  # orthogonal
    with pytest.raises(ValueError, match="strictly decreasing"):
        bands([1.0, 4.0])
