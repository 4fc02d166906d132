"""The (beta-)VAE objective: reconstruction + kl_weight * KL (negative ELBO per image).

Kingma & Welling 2014, Eq. 10 (the SGVB estimator with a Gaussian posterior and a standard
normal prior; its KL term in closed form, Appendix B); Higgins et al. 2017 (beta-VAE) weight
the KL term by beta = ``kl_weight``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ReconLoss = Literal["bce", "mse"]


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image: (B, ...) -> (B,), summed over the latent.

    Kingma & Welling 2014, Appendix B: -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2).
    """
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    return kl.flatten(1).sum(1)


def reconstruction(logits: Tensor, x0: Tensor, recon_loss: ReconLoss = "bce") -> Tensor:
    """Reconstruction term per image: (B, C, H, W) -> (B,), summed over pixels.

    ``bce``: Bernoulli negative log-likelihood of the [0, 1] targets ``(x0 + 1) / 2`` under
    ``logits``. ``mse``: squared error between the decoded image ``2 sigmoid(logits) - 1``
    and ``x0``, both in [-1, 1] pixel units (a Gaussian likelihood up to constants).
    """
    logits = logits.float()
    if recon_loss == "bce":
        target = (x0.float() + 1) / 2
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    else:
        per_pixel = (torch.sigmoid(logits) * 2 - 1 - x0.float()).pow(2)
    return per_pixel.flatten(1).sum(1)


def vae_terms(
    logits: Tensor, x0: Tensor, mu: Tensor, logvar: Tensor, recon_loss: ReconLoss = "bce"
) -> tuple[Tensor, Tensor]:
    """(reconstruction, KL), each a scalar: per-image sums averaged over the batch."""
    recon = reconstruction(logits, x0, recon_loss).mean()
    kl = kl_divergence(mu.float(), logvar.float()).mean()
    return recon, kl


class VAEObjective:
    """``(net, x0, cond, generator) -> loss``, the loop's objective contract.

    ``net`` is a :class:`diffkit.nn.vae.VAE` (possibly DDP-wrapped); its forward draws
    ``z = mu + exp(logvar / 2) * eps`` with ``eps`` from ``generator``. The loss is
    ``recon + kl_weight * KL`` per image, averaged over the batch; ``cond`` is ignored.
    """

    def __init__(self, kl_weight: float = 1.0, recon_loss: ReconLoss = "bce") -> None:
        if recon_loss not in ("bce", "mse"):
            raise ValueError(f"unknown recon_loss {recon_loss!r}; use bce or mse")
        self.kl_weight, self.recon_loss = kl_weight, recon_loss

    def __call__(
        self, net: nn.Module, x0: Tensor, cond: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        logits, mu, logvar = net(x0, generator)  # (B, C, H, W), (B, *latent) x 2
        recon, kl = vae_terms(logits, x0, mu, logvar, self.recon_loss)
        return recon + self.kl_weight * kl
