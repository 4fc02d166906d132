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


@pytest.mark.parametrize("kind", ["eps", "x0", "v"])
def test_split_of_target_recovers_both(tensors, kind):
    x0, eps, abar, xt = tensors
    target = param.training_target(kind, x0, eps, abar)
    e, x = param.split_prediction(target, kind, xt, abar)
    torch.testing.assert_close(e, eps)
    torch.testing.assert_close(x, x0)
