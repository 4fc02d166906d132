"""The (beta-)VAE objective: reconstruction + kl_weight * KL (negative ELBO per image),
optionally + lpips_weight * a perceptual distance.

Kingma & Welling 2014, Eq. 10 (the SGVB estimator with a Gaussian posterior and a standard
normal prior; its KL term in closed form, Appendix B); Higgins et al. 2017 (beta-VAE) weight
the KL term by beta = ``kl_weight``. The perceptual term is LPIPS (Zhang et al. 2018) as
the autoencoder of latent diffusion uses it (Rombach et al. 2022, Sec. 3; its code's
``LPIPSWithDiscriminator`` adds each image's distance to every pixel's reconstruction error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ReconLoss = Literal["bce", "mse"]
Perceptual = Callable[[Tensor, Tensor], Tensor]
"""``(x, y) -> (B,)``: a differentiable distance between images (B, C, H, W) in [-1, 1]."""


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


def perceptual_term(perceptual: Perceptual, logits: Tensor, x0: Tensor) -> Tensor:
    """The perceptual term, a scalar: distance(x0, decoded means) per image, times the
    C * H * W elements of one image, averaged over the batch.

    The reconstruction term is a sum over those elements, so counting the per-image
    distance once per element (as latent diffusion's autoencoder loss adds it to each
    pixel's error before summing) gives ``lpips_weight`` the meaning it has beside a
    per-pixel *mean* reconstruction: ``recon_mean + w * LPIPS`` is this loss divided by
    C * H * W. The gradient flows through the decoded image ``2 sigmoid(logits) - 1``.
    """
    decoded = torch.sigmoid(logits.float()) * 2 - 1  # (B, C, H, W), the Bernoulli means
    distance = perceptual(x0.float(), decoded).float().flatten()  # (B,)
    return distance.mean() * x0[0].numel()


class VAEObjective:
    """``(net, x0, cond, generator) -> loss``, the loop's objective contract.

    ``net`` is a :class:`diffkit.nn.vae.VAE` (possibly DDP-wrapped); its forward draws
    ``z = mu + exp(logvar / 2) * eps`` with ``eps`` from ``generator``. The loss is
    ``recon + kl_weight * KL [+ lpips_weight * perceptual_term]`` per image, averaged over
    the batch; ``cond`` is ignored. ``perceptual`` (e.g. LPIPS, frozen: it is not trained)
    is needed, and called, only when ``lpips_weight`` > 0.
    """

    def __init__(
        self,
        kl_weight: float = 1.0,
        recon_loss: ReconLoss = "bce",
        lpips_weight: float = 0.0,
        perceptual: Perceptual | None = None,
    ) -> None:
        if recon_loss not in ("bce", "mse"):
            raise ValueError(f"unknown recon_loss {recon_loss!r}; use bce or mse")
        if lpips_weight > 0 and perceptual is None:
            raise ValueError("lpips_weight > 0 needs the perceptual distance (LPIPS)")
        self.kl_weight, self.recon_loss = kl_weight, recon_loss
        self.lpips_weight, self.perceptual = lpips_weight, perceptual

    def __call__(
        self, net: nn.Module, x0: Tensor, cond: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        logits, mu, logvar = net(x0, generator)  # (B, C, H, W), (B, *latent) x 2
        recon, kl = vae_terms(logits, x0, mu, logvar, self.recon_loss)
        loss = recon + self.kl_weight * kl
        if self.lpips_weight > 0 and self.perceptual is not None:
            loss = loss + self.lpips_weight * perceptual_term(self.perceptual, logits, x0)
        return loss
