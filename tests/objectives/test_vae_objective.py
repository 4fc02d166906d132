"""The VAE objective's terms (Kingma & Welling 2014, Eq. 10 and Appendix B) and its
optional perceptual term."""

from __future__ import annotations

import math

import pytest
import torch

from diffkit.config.model import VAEConfig
from diffkit.nn import build_model
from diffkit.objectives.vae import (
    VAEObjective,
    kl_divergence,
    perceptual_term,
    reconstruction,
    vae_terms,
)


def test_kl_is_zero_at_the_prior_and_matches_the_closed_form():
    assert torch.equal(kl_divergence(torch.zeros(3, 8), torch.zeros(3, 8)), torch.zeros(3))
    mu = torch.tensor([[1.0, -2.0]])
    var = torch.tensor([[0.5, 4.0]])
    # KL(N(m, s^2) || N(0, 1)) = (s^2 + m^2 - 1 - log s^2) / 2 per dimension
    want = sum((v + m**2 - 1 - math.log(v)) / 2 for m, v in zip([1, -2], [0.5, 4.0], strict=True))
    assert kl_divergence(mu, var.log()).item() == pytest.approx(want)
    # spatial latents sum over every element
    assert kl_divergence(torch.ones(2, 4, 3, 3), torch.zeros(2, 4, 3, 3)).tolist() == [18, 18]


def test_kl_weight_scales_only_the_kl_term():
    torch.manual_seed(0)
    net = build_model(VAEConfig(latent="flat", latent_dim=8)).eval()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    losses = {
        w: VAEObjective(w)(net, x, None, torch.Generator().manual_seed(1)).item()
        for w in (0.0, 1.0, 3.0)
    }
    logits, mu, logvar = net(x, torch.Generator().manual_seed(1))
    recon, kl = vae_terms(logits, x, mu, logvar)
    assert losses[0.0] == pytest.approx(recon.item(), rel=1e-5)
    assert losses[1.0] == pytest.approx(recon.item() + kl.item(), rel=1e-5)
    assert losses[3.0] - losses[1.0] == pytest.approx(2 * kl.item(), rel=1e-4)


def test_reconstruction_prefers_the_right_logits():
    x = (torch.rand(2, 1, 6, 6) > 0.5).float() * 2 - 1  # binary images in {-1, 1}
    perfect = x * 20  # sigmoid -> ~0 or ~1 at the targets
    zero = torch.zeros_like(x)
    for loss in ("bce", "mse"):
        assert (reconstruction(perfect, x, loss) < reconstruction(zero, x, loss)).all()
    # bce of zero logits is log 2 per pixel; mse of zero logits (image 0) is 1 per pixel
    assert reconstruction(zero, x, "bce")[0].item() == pytest.approx(36 * math.log(2))
    assert reconstruction(zero, x, "mse")[0].item() == pytest.approx(36.0)


def test_unknown_recon_loss_is_refused():
    with pytest.raises(ValueError, match="recon_loss"):
        VAEObjective(1.0, "l1")  # type: ignore[arg-type]


def test_lpips_weight_zero_is_the_old_objective_and_never_calls_the_distance():
    def never(x, y):
        raise AssertionError("called")

    torch.manual_seed(0)
    net = build_model(VAEConfig(latent="spatial", base_channels=8)).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    old = VAEObjective(0.5, "mse")(net, x, None, torch.Generator().manual_seed(1))
    new = VAEObjective(0.5, "mse", 0.0, never)(net, x, None, torch.Generator().manual_seed(1))
    assert torch.equal(old, new)


def test_the_perceptual_term_counts_each_image_once_per_pixel():
    """A stand-in distance (mean squared error per image): the term is its batch mean
    times C * H * W, so with mse it equals the summed reconstruction term exactly."""
    torch.manual_seed(0)
    net = build_model(VAEConfig(latent="spatial", base_channels=8, in_channels=3,
                                image_size=16)).eval()  # fmt: skip

    def mse(a, b):
        return (a - b).pow(2).flatten(1).mean(1)  # (B,)

    x = torch.rand(4, 3, 16, 16) * 2 - 1
    logits, mu, logvar = net(x, torch.Generator().manual_seed(1))
    term = perceptual_term(mse, logits, x)
    recon, kl = vae_terms(logits, x, mu, logvar, "mse")
    torch.testing.assert_close(term, recon)
    loss = VAEObjective(0.1, "mse", 2.0, mse)(net, x, None, torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, recon + 0.1 * kl + 2.0 * recon)


def test_an_lpips_weight_needs_a_distance():
    with pytest.raises(ValueError, match="perceptual"):
        VAEObjective(1.0, "bce", 1.0)
