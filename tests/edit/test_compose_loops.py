"""Combinators and editing loops: identity invariants, parameterization independence,
SDEdit from start 0 and inpainting with empty and full masks."""

from __future__ import annotations

import pytest
import torch

from diffkit.config.resolve import resolve_run_config
from diffkit.config.run import DDPMRunConfig, FlowRunConfig
from diffkit.edit.compose import anagram, factorized, with_guidance
from diffkit.edit.filters import highpass, lowpass
from diffkit.edit.loops import inpaint, noised, sdedit
from diffkit.edit.views import view
from diffkit.methods.load import pipeline_for
from diffkit.models.conditioning import Cond
from diffkit.nn.build import build_model
from diffkit.param import eps_to_x0, to_v


def _pipe(kind=DDPMRunConfig, **overrides):
    cfg = resolve_run_config(kind, {"preset": "tiny", **overrides})
    net = build_model(cfg.model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a fresh UNet outputs zeros; give every weight noise
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return pipeline_for(cfg, net.eval(), torch.device("cpu"))


@pytest.fixture(scope="module")
def ddpm():
    return _pipe(**{"model.num_classes": 3})


def test_identity_anagram_with_one_prompt_is_the_plain_network(ddpm):
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([100, 700])
    c = Cond(labels=torch.tensor([1, 2]))
    with torch.no_grad():
        plain = ddpm.model.raw(x, t, c)
        out = anagram(ddpm.model.raw, [c], [view("identity")])(x, t)
    assert torch.equal(out, plain)


def test_composition_is_the_same_in_eps_x0_and_v():
    """Views and filters are linear and the converters affine in the output for fixed
    (x_t, t): composing x0 (or v) networks equals converting the composed eps."""
    w = torch.randn(16, 16, dtype=torch.float64)
    abar = torch.tensor(0.3, dtype=torch.float64)

    def eps_net(x, t, cond):  # any nonlinear function of x; cond shifts it
        return torch.tanh(x.flatten(1) @ w).reshape(x.shape) + cond[:, None, None, None]

    def x0_net(x, t, cond):
        return eps_to_x0(eps_net(x, t, cond), x, abar)

    def v_net(x, t, cond):
        return to_v(eps_net(x, t, cond), x0_net(x, t, cond), abar)

    x, t = torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.zeros(2)
    conds = [torch.tensor([0.5, -1.0], dtype=torch.float64), torch.tensor([2.0, 0.0])]
    views, filters = [view("identity"), view("rot180")], [lowpass(1.0, 3), highpass(1.0, 3)]
    for combine in (lambda n: anagram(n, conds, views), lambda n: factorized(n, conds, filters)):
        eps = combine(eps_net)(x, t)
        torch.testing.assert_close(combine(x0_net)(x, t), eps_to_x0(eps, x, abar))
        torch.testing.assert_close(combine(v_net)(x, t), to_v(eps, eps_to_x0(eps, x, abar), abar))


def test_guided_anagram_batches_every_view_and_its_partner(ddpm):
    calls = []
    raw = ddpm.model.raw

    def counted(x, t, cond):
        calls.append(x.shape[0])
        return raw(x, t, cond)

    net = anagram(with_guidance(counted, ddpm.model.unconditional, 3.0),
                  [Cond(labels=torch.tensor([0])), Cond(labels=torch.tensor([1]))],
                  [view("identity"), view("flip")])  # fmt: skip
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        net(x, torch.tensor([500]))
    assert calls == [4]  # 2 views x (cond, null class), one forward


def test_sdedit_from_start_zero_is_plain_sampling(ddpm):
    images = torch.rand(2, 1, 28, 28) * 2 - 1
    out = sdedit(ddpm, images, 0, steps=5, seed=4)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(4))
    plain, _ = ddpm.generate(noise, ddpm.DEFAULT_SAMPLER, 5)
    assert torch.equal(out, plain)
    late = sdedit(ddpm, images, 4, steps=5, seed=4)  # one step from the least noisy point
    early = sdedit(ddpm, images, 1, steps=5, seed=4)
    assert (late - images).abs().mean() < (early - images).abs().mean()
    with pytest.raises(ValueError, match="start must be between 0 and 4"):
        sdedit(ddpm, images, 5, steps=5)


@pytest.mark.parametrize("kind", [DDPMRunConfig, FlowRunConfig])
def test_inpainting_empty_mask_returns_the_input_and_full_mask_is_sampling(kind):
    pipe = _pipe(kind)
    sampler = "ddim" if kind is DDPMRunConfig else "euler"
    images = torch.rand(2, 1, 28, 28) * 2 - 1
    empty = inpaint(pipe, images, torch.zeros(1, 1, 28, 28), sampler=sampler, steps=4)
    assert torch.equal(empty, images)
    full = inpaint(pipe, images, torch.ones(1, 1, 28, 28), sampler=sampler, steps=4, seed=2)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(2))
    plain, _ = pipe.generate(noise, sampler, 4)
    torch.testing.assert_close(full, plain, atol=1e-6, rtol=0)
    top = torch.zeros(1, 1, 28, 28)
    top[..., :14, :] = 1  # regenerate the top half
    half = inpaint(pipe, images, top, sampler=sampler, steps=4)
    assert torch.equal(half[..., 14:, :], images[..., 14:, :])
    assert not torch.equal(half[..., :14, :], images[..., :14, :])


def test_forward_noise_has_the_marginal_of_q(ddpm):
    x0 = torch.full((4000, 1, 2, 2), 0.5)
    xt = noised(ddpm, x0, 600, torch.randn(x0.shape))
    abar = float(ddpm.model.schedule.alphas_cumprod[600])
    assert abs(float(xt.mean()) - 0.5 * abar**0.5) < 0.02
    assert abs(float(xt.var()) - (1 - abar)) < 0.03


def test_repaint_through_a_pipeline_keeps_the_known_region(ddpm):
    from diffkit.edit.loops import repaint

    images = torch.rand(2, 1, 28, 28) * 2 - 1
    left = torch.zeros(1, 1, 28, 28)
    left[..., :14] = 1
    out = repaint(ddpm, images, left, steps=4, jump=2, resample=2,
                  cond=Cond(labels=torch.tensor([0, 1])), guidance=2.0)  # fmt: skip
    assert torch.equal(out[..., 14:], images[..., 14:]) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="needs a DDPM"):
        repaint(_pipe(FlowRunConfig), images, left, steps=4)


def test_anagram_and_hybrid_of_two_gaussians_land_on_the_closed_form_mean():
    """Class c's data is N(MU[c], S^2 I) on 2x2 images. The anagram's estimate is the
    exact denoiser of N((MU[0] + flip^-1 MU[1]) / 2, S^2 I); the hybrid's that of
    N(low MU[0] + high MU[1], S^2 I), since each filter is linear."""
    from diffkit.samplers import ddim_sample, make_denoiser
    from diffkit.schedules import make_schedule, spaced_timesteps

    s2 = 0.05
    mu = torch.tensor([[1.0, -1.0, 0.5, 0.0], [0.0, 2.0, -0.5, 1.0]],
                      dtype=torch.float64).reshape(2, 1, 2, 2)  # fmt: skip
    sched = make_schedule("linear")

    def eps_net(x, t, cond):  # the exact E[eps | x_t] of class cond
        a = sched.alpha_bar(t, x.ndim, x.dtype)
        return (1 - a).sqrt() * (x - a.sqrt() * mu[cond]) / (a * s2 + 1 - a)

    n = 4000
    c0, c1 = torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)
    low, high = lowpass(0.7, 3), highpass(0.7, 3)
    cases = {
        "anagram": (anagram(eps_net, [c0, c1], [view("identity"), view("flip")]),
                    (mu[0] + view("flip").inverse(mu[1:])[0]) / 2),
        "hybrid": (factorized(eps_net, [c0, c1], [low, high]),
                   low(mu[:1])[0] + high(mu[1:])[0]),
    }  # fmt: skip
    ts = spaced_timesteps(1000, 100, "trailing")
    for name, (net, expected) in cases.items():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 1, 2, 2, generator=g, dtype=torch.float64)
        out = ddim_sample(make_denoiser(net, sched, "eps", clip=False), x, ts, sched)
        torch.testing.assert_close(out.mean(0), expected, atol=0.02, rtol=0, msg=name)
        assert abs(float(out.var(0).mean()) - s2) < 0.01, name


@pytest.mark.parametrize(("kind", "sampler"), [(DDPMRunConfig, "ddim"), (FlowRunConfig, "euler")])
def test_one_step_x0_is_the_last_step_of_the_sampler(kind, sampler):
    """From the last grid point one DDIM step (to abar = 1) or one Euler step (to t = 1) is
    exactly the one-step estimate of x0."""
    from diffkit.edit.ops import best_blur, one_step_x0

    pipe = _pipe(kind)
    point = pipe.grid(5)[4]
    xt = torch.randn(2, 1, 28, 28)
    x, _ = pipe.generate(xt, sampler, 5, start=4, opts=None)
    torch.testing.assert_close(one_step_x0(pipe, xt, float(point)), x, atol=1e-5, rtol=0)
    clean = torch.zeros(1, 1, 8, 8)
    blurred, sigma = best_blur(clean + 0.3 * torch.randn(1, 1, 8, 8), clean)
    assert sigma == 3.0 and blurred.abs().mean() < 0.3  # flat truth: the widest blur wins
