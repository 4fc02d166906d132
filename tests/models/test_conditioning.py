"""Cond batches its fields together; an absent hint scale means 1 for every row."""

from __future__ import annotations

import pytest
import torch

from diffkit.models.conditioning import Cond, null_class


def test_cat_fills_a_missing_hint_scale_with_ones():
    hint = torch.rand(2, 1, 4, 4)
    cond = Cond(labels=torch.tensor([1, 2]), hint=hint)
    partner = Cond(labels=torch.tensor([10, 10]), hint=hint, hint_scale=torch.zeros(2))
    both = cond.cat(partner)
    assert both.hint_scale.tolist() == [1.0, 1.0, 0.0, 0.0] and both.labels.tolist() == [
        1,
        2,
        10,
        10,
    ]
    assert null_class(cond, 10).hint is hint  # the hint goes to both halves of guidance
    with pytest.raises(ValueError, match="cannot batch"):
        Cond(labels=torch.tensor([1])).cat(Cond(hint=torch.rand(1, 1, 4, 4)))
