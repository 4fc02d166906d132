import pytest
import torch

from diffkit import param


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(8, 1, 4, 4, generator=g, dtype=torch.float64)
    abar = torch.rand(8, 1, 1, 1, generator=g, dtype=torch.float64) * 0.98 + 0.01
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    return x0, eps, abar, xt


def test_converters_invert(tensors):
    x0, eps, abar, xt = tensors
    v = param.to_v(eps, x0, abar)
    torch.testing.assert_close(param.eps_to_x0(eps, xt, abar), x0)
    torch.testing.assert_close(param.x0_to_eps(x0, xt, abar), eps)
    torch.testing.assert_close(param.v_to_x0(v, xt, abar), x0)
    torch.testing.assert_close(param.v_to_eps(v, xt, abar), eps)


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "edm"])
def test_split_of_target_recovers_both(tensors, kind):
    x0, eps, abar, xt = tensors
    target = param.training_target(kind, x0, eps, abar)
    e, x = param.split_prediction(target, kind, xt, abar)
    torch.testing.assert_close(e, eps)
    torch.testing.assert_close(x, x0)


def test_edm_skip_path_is_the_exact_denoiser_of_gaussian_data():
    """For data ~ N(0, sigma_d^2 I), E[x0 | x_t] = a sigma_d^2 / (a^2 sigma_d^2 + s^2) x_t:
    EDM's c_skip path alone, so the ideal network output F is 0 at every noise level."""
    sd = param.EDM_SIGMA_DATA
    abar = torch.tensor([1e-4, 0.05, 0.5, 0.9, 0.9999], dtype=torch.float64).reshape(-1, 1)
    xt = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _, x0 = param.split_prediction(torch.zeros_like(xt), "edm", xt, abar)
    a, s2 = abar.sqrt(), 1 - abar
    torch.testing.assert_close(x0, a * sd**2 / (abar * sd**2 + s2) * xt)


def test_edm_target_and_input_have_unit_variance():
    """EDM's c_in and c_out make the network's input and target unit-variance for data of
    std sigma_d at every noise level (Karras et al. 2022, Appendix B.6)."""
    g = torch.Generator().manual_seed(0)
    n, sd = 200_000, param.EDM_SIGMA_DATA
    for ab in (1e-4, 0.1, 0.5, 0.99, 0.9999):
        abar = torch.tensor(ab, dtype=torch.float64)
        x0 = sd * torch.randn(n, generator=g, dtype=torch.float64)
        eps = torch.randn(n, generator=g, dtype=torch.float64)
        xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        assert abs(param.training_target("edm", x0, eps, abar).std().item() - 1) < 0.01
        assert abs(param.network_input("edm", xt, abar).std().item() - 1) < 0.01


def test_network_input_is_identity_for_the_other_kinds(tensors):
    _, _, abar, xt = tensors
    for kind in ("eps", "x0", "v"):
        assert param.network_input(kind, xt, abar) is xt
