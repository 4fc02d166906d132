import pytest
import torch

from diffkit.schedules import spaced_timesteps


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("T", [1000, 4000, 37])
def test_spacing_distinct_descending_in_range_for_every_count(spacing, T):
    for n in range(1, T + 1):
        ts = spaced_timesteps(T, n, spacing)
        assert ts.dtype == torch.long and ts.shape == (n,), n
        assert torch.all(ts[:-1] > ts[1:]), n
        assert ts.min() >= 0 and ts.max() <= T - 1, n


def test_spacing_endpoints():
    assert spaced_timesteps(1000, 10, "trailing")[0] == 999
    assert spaced_timesteps(1000, 10, "leading")[-1] == 0
    assert spaced_timesteps(1000, 10, "leading")[0] == 900
    lin = spaced_timesteps(1000, 10, "linspace")
    assert lin[0] == 999 and lin[-1] == 0
    assert torch.equal(spaced_timesteps(1000, 1000, "trailing"), torch.arange(999, -1, -1))


def test_spacing_rejects_bad_counts():
    with pytest.raises(ValueError, match="between 1 and 1000"):
        spaced_timesteps(1000, 1001)
    with pytest.raises(ValueError):
        spaced_timesteps(1000, 0)
