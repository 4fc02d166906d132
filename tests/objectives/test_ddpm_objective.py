import pytest
import torch

from diffkit.objectives.ddpm import DDPMObjective
from diffkit.param import training_target
from diffkit.schedules import make_schedule


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_min_snr_weights_equal_min_snr_in_x0_space(prediction):
    """Weighted loss in any target == min(snr, gamma) * ||x0_hat - x0||^2 (Hang et al. 2023)."""
    sched = make_schedule("linear")
    obj = DDPMObjective(sched, prediction, min_snr_gamma=5.0)
    abar = sched.alphas_cumprod[torch.tensor([10, 200, 500, 990])].float()
    snr = abar / (1 - abar)
    # An x0 error of size d maps to an error of size d * factor in the target's space.
    factor = {"eps": snr.sqrt(), "x0": torch.ones_like(snr), "v": (snr + 1).sqrt()}[prediction]
    weighted = obj.weights(abar) * factor**2
    torch.testing.assert_close(weighted, snr.clamp(max=5.0), rtol=1e-4, atol=0)


def test_no_weighting_is_plain_mse():
    obj = DDPMObjective(make_schedule("cosine"))
    assert torch.equal(obj.weights(torch.rand(7)), torch.ones(7))


def test_loss_is_zero_for_an_oracle_network():
    """A network that returns the true target gets zero loss, through the same noise draw."""
    sched = make_schedule("linear")
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1

    def oracle(xt, t, cond):
        g = torch.Generator().manual_seed(0)
        torch.randint(0, 1000, (4,), generator=g)  # replay the objective's draws
        eps = torch.randn(x0.shape, generator=g)
        return training_target("v", x0, eps, sched.alpha_bar(t, 4))

    loss = DDPMObjective(sched, "v")(oracle, x0, None, torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(0.0, abs=1e-10)


class LabelSpy(torch.nn.Module):
    """Returns zeros and remembers the labels it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, x, t, cond):
        self.seen.append(cond)
        return x * self.w


def _objective(**kw):
    return DDPMObjective(make_schedule("linear", 100, 1e-4, 0.02), **kw)


def test_unconditional_objective_never_passes_labels():
    spy = LabelSpy()
    _objective()(spy, torch.randn(4, 1, 8, 8), torch.arange(4), torch.Generator())
    assert spy.seen == [None]


def test_label_dropout_sends_the_null_class():
    spy = LabelSpy()
    y = torch.arange(8) % 10
    _objective(num_classes=10, cond_drop=0.0)(spy, torch.randn(8, 4), y, torch.Generator())
    _objective(num_classes=10, cond_drop=0.999999)(spy, torch.randn(8, 4), y, torch.Generator())
    assert torch.equal(spy.seen[0], y) and (spy.seen[1] == 10).all()


def test_conditional_objective_needs_labels():
    with pytest.raises(ValueError, match="labelled"):
        _objective(num_classes=10)(LabelSpy(), torch.randn(2, 4), None, torch.Generator())
