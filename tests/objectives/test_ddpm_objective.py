import pytest
import torch

from diffkit.objectives.ddpm import DDPMObjective
from diffkit.param import edm_coefficients, network_input, training_target
from diffkit.schedules import make_schedule


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "edm"])
def test_min_snr_weights_equal_min_snr_in_x0_space(prediction):
    """Weighted loss in any target == min(snr, gamma) * ||x0_hat - x0||^2 (Hang et al. 2023)."""
    sched = make_schedule("linear")
    obj = DDPMObjective(sched, prediction, min_snr_gamma=5.0)
    abar = sched.alphas_cumprod[torch.tensor([10, 200, 500, 990])].float()
    snr = abar / (1 - abar)
    # An x0 error of size d maps to an error of size d * factor in the target's space.
    c_out = edm_coefficients(abar)[2]
    factor = {"eps": snr.sqrt(), "x0": torch.ones_like(snr), "v": (snr + 1).sqrt(),
              "edm": 1 / c_out}[prediction]  # fmt: skip
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


def test_uniform_levels_are_the_ddpm_draws():
    """The uniform path is Algorithm 1 as before: t ~ U{0..T-1}, then eps, x_t = q(x_t|x_0)."""
    sched = make_schedule("linear")
    x0 = torch.rand(6, 1, 8, 8) * 2 - 1
    seen = {}

    def spy(xt, t, cond):
        seen["xt"], seen["t"] = xt, t
        return torch.zeros_like(xt)

    DDPMObjective(sched)(spy, x0, None, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t = torch.randint(0, 1000, (6,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    assert torch.equal(seen["t"], t)
    assert torch.equal(seen["xt"], sched.q_sample(x0, t, eps))


def test_log_normal_levels_follow_edm():
    """ln sigma ~ N(-1.2, 1.2^2) (inside the schedule's range), real-valued timesteps whose
    schedule abar is the drawn one."""
    sched = make_schedule("linear")
    obj = DDPMObjective(sched, "edm", noise_levels="log_normal")
    t, abar = obj.levels(100_000, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert t.dtype == torch.float32 and t.min() >= 0 and t.max() <= 999
    log_sigma = ((1 - abar) / abar).sqrt().log()
    inside = log_sigma[(log_sigma > -4.5) & (log_sigma < 5.0)]  # sigma range 0.01 .. 158
    assert inside.numel() > 99_000
    assert inside.mean().item() == pytest.approx(-1.2, abs=0.02)
    assert inside.std().item() == pytest.approx(1.2, abs=0.02)
    # the timestep is where log abar, interpolated between integer steps, equals the draw
    lo = t.double().floor().long().clamp(max=998)
    frac = t.double() - lo
    table = sched.alphas_cumprod.log()
    torch.testing.assert_close(table[lo] + frac * (table[lo + 1] - table[lo]), abar.log())


def test_edm_oracle_gets_zero_loss_and_sees_c_in_x_t():
    sched = make_schedule("linear")
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1
    obj = DDPMObjective(sched, "edm", noise_levels="log_normal")

    def oracle(inp, t, cond):
        g = torch.Generator().manual_seed(0)
        _, abar = obj.levels(4, x0.device, g)  # replay the objective's draws
        eps = torch.randn(x0.shape, generator=g)
        abar = abar.reshape(-1, 1, 1, 1).float()
        xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        torch.testing.assert_close(inp, network_input("edm", xt, abar))
        return training_target("edm", x0, eps, abar)

    loss = obj(oracle, x0, None, torch.Generator().manual_seed(0))
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
