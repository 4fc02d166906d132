import math

import pytest
import torch

from diffkit.schedules import cosine_betas, linear_betas, make_schedule


def test_linear_betas_endpoints_and_monotone():
    b = linear_betas(1000, 1e-4, 0.02)
    assert b.shape == (1000,) and b.dtype == torch.float64
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    assert torch.all(b[1:] > b[:-1])


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_alphas_cumprod_decreasing_in_unit_interval(kind):
    ab = make_schedule(kind).alphas_cumprod
    assert torch.all(ab[1:] < ab[:-1])
    assert 0 < ab[-1] < ab[0] < 1


def test_cosine_matches_closed_form():
    T, s = 1000, 0.008
    ab = torch.cumprod(1 - cosine_betas(T, s), 0)
    t = torch.arange(1, T + 1, dtype=torch.float64)
    f = lambda u: torch.cos((u / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    expected = f(t) / f(torch.zeros(1, dtype=torch.float64))
    # Agreement until beta hits its 0.999 clip in the last few steps.
    torch.testing.assert_close(ab[:-5], expected[:-5], rtol=1e-9, atol=1e-12)
    assert cosine_betas(T).max() <= 0.999


def test_q_sample_statistics():
    sched = make_schedule("linear")
    t = torch.full((200_000,), 300)
    x0 = torch.full((200_000, 1), 0.7)
    xt = sched.q_sample(x0, t, torch.randn_like(x0))
    ab = sched.alphas_cumprod[300].item()
    assert xt.mean().item() == pytest.approx(math.sqrt(ab) * 0.7, abs=5e-3)
    assert xt.var().item() == pytest.approx(1 - ab, rel=1e-2)


def test_posterior_is_bayes_rule_for_point_mass():
    # For x0 fixed, q(x_{t-1} | x_t, x0) must equal the product of q(x_{t-1}|x0) and
    # q(x_t|x_{t-1}) normalised: check its mean/variance against the Gaussian product formula.
    sched = make_schedule("linear")
    t = torch.tensor([500])
    ab = sched.alphas_cumprod
    a_prev, beta = ab[499].item(), sched.betas[500].item()
    x0, xt = torch.tensor([[0.3]]), torch.tensor([[-0.2]])
    mean, var = sched.posterior(x0, xt, t)
    # prior N(sqrt(a_prev) x0, 1 - a_prev); likelihood x_t ~ N(sqrt(1-beta) x_{t-1}, beta)
    prec = 1 / (1 - a_prev) + (1 - beta) / beta
    mu = (math.sqrt(a_prev) * 0.3 / (1 - a_prev) + math.sqrt(1 - beta) * -0.2 / beta) / prec
    assert var.item() == pytest.approx(1 / prec, rel=1e-5)
    assert mean.item() == pytest.approx(mu, rel=1e-5)


def test_posterior_variance_zero_at_t0():
    sched = make_schedule("cosine")
    _, var = sched.posterior(torch.zeros(1, 1), torch.zeros(1, 1), torch.tensor([0]))
    assert var.item() == 0


@pytest.mark.parametrize("T", [100, 250, 4000])
def test_linear_schedule_keeps_its_end_point_for_any_length(T):
    ref = make_schedule("linear", 1000).alphas_cumprod[-1].item()
    got = make_schedule("linear", T).alphas_cumprod[-1].item()
    assert got < 1e-3 and got == pytest.approx(ref, rel=0.6)
