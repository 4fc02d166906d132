"""The DDPM training loss (Ho et al. 2020, Algorithm 1), for eps, x0 or v targets.

Optional Min-SNR-gamma weighting (Hang et al. 2023, Eq. 9-10) rebalances timesteps and
speeds convergence; its weight is expressed per prediction target. For class-conditional
networks (``num_classes`` set) labels are replaced by the null class with probability
``cond_drop``, which trains the unconditional model that classifier-free guidance needs
(Ho & Salimans 2022, Algorithm 1); unconditional networks never see labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from diffkit.nn.conditioning import training_labels
from diffkit.param import Prediction, training_target
from diffkit.schedules import DDPMSchedule


@dataclass(frozen=True)
class DDPMObjective:
    schedule: DDPMSchedule
    prediction: Prediction = "eps"
    min_snr_gamma: float | None = None
    num_classes: int | None = None
    cond_drop: float = 0.0

    def __call__(
        self, net: nn.Module, x0: Tensor, cond: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        """Mean loss over a batch x0: (B, ...); t ~ U{0..T-1}, eps ~ N(0, I)."""
        b = x0.shape[0]
        cond = self.labels(cond, generator)
        t = torch.randint(0, self.schedule.num_steps, (b,), device=x0.device, generator=generator)
        eps = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        xt = self.schedule.q_sample(x0, t, eps)
        abar = self.schedule.alpha_bar(t, x0.ndim, x0.dtype)
        pred = net(xt, t, cond)
        target = training_target(self.prediction, x0, eps, abar)
        per_item = (pred.float() - target).pow(2).flatten(1).mean(1)  # (B,)
        return (per_item * self.weights(abar.flatten())).mean()

    def labels(self, cond: Tensor | None, generator: torch.Generator) -> Tensor | None:
        """The labels the network sees: None if unconditional, else with dropped ones."""
        return training_labels(cond, self.num_classes, self.cond_drop, generator)

    def weights(self, abar: Tensor) -> Tensor:
        """Per-sample loss weights (B,); all ones without Min-SNR."""
        if self.min_snr_gamma is None:
            return torch.ones_like(abar)
        snr = abar / (1 - abar)
        clipped = snr.clamp(max=self.min_snr_gamma)
        # Min-SNR weights the x0-space error by min(snr, gamma); divide by the factor that
        # the chosen target already carries relative to x0 (snr for eps, snr + 1 for v).
        match self.prediction:
            case "eps":
                return clipped / snr
            case "v":
                return clipped / (snr + 1)
            case "x0":
                return clipped
        raise ValueError(self.prediction)
