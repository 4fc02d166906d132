import pytest
import torch

from diffkit.schedules import make_schedule, spaced_timesteps
from diffkit.schedules.spacing import karras_timesteps


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


@pytest.mark.parametrize("kind,T", [("linear", 1000), ("cosine", 1000), ("linear", 37)])
def test_karras_grid_distinct_descending_in_range_for_every_count(kind, T):
    ab = make_schedule(kind, T).alphas_cumprod
    for n in range(1, T + 1, 1 if T < 100 else 7):
        ts = karras_timesteps(ab, n)
        assert ts.dtype == torch.long and ts.shape == (n,), n
        assert torch.all(ts[:-1] > ts[1:]), n
        assert ts.min() >= 0 and ts.max() <= T - 1, n
    assert torch.equal(karras_timesteps(ab, T), torch.arange(T - 1, -1, -1))


def test_karras_grid_follows_eq_5():
    """Ends at the schedule's extremes; rho = 7 puts most steps at low noise; rho = 1 spaces
    sigma linearly (checked on the sigmas of the rounded timesteps)."""
    ab = make_schedule("linear").alphas_cumprod
    ts = karras_timesteps(ab, 10)
    assert ts[0] == 999 and ts[-1] == 0
    assert (ts < 120).sum() == 3  # trailing spacing puts 1 of 10 there (t = 99)
    sigma = ((1 - ab) / ab).sqrt()
    lin = sigma[karras_timesteps(ab, 5, rho=1.0)]
    want = torch.linspace(float(sigma[-1]), float(sigma[0]), 5, dtype=torch.float64)
    torch.testing.assert_close(lin, want, rtol=0.02, atol=0.05)


def test_karras_needs_the_schedule():
    with pytest.raises(ValueError, match="karras_timesteps"):
        spaced_timesteps(1000, 10, "karras")
