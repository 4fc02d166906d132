"""The DDPM training loss (Ho et al. 2020, Algorithm 1), for eps, x0, v or EDM targets.

Noise levels are drawn as DDPM draws them (``uniform``: t ~ U{0..T-1}) or as EDM does
(``log_normal``: ln sigma ~ N(mean, std), Karras et al. 2022, Table 1), where sigma =
sqrt((1 - abar) / abar) is mapped to the schedule's real-valued timestep (interpolated in
log abar, as the probability-flow samplers evaluate the network between grid points) and
clamped to the schedule's range. With the ``edm`` prediction and log-normal levels this is
EDM's training recipe on a VP schedule: its preconditioning is in :mod:`diffkit.param`.

Optional Min-SNR-gamma weighting (Hang et al. 2023, Eq. 9-10) rebalances timesteps and
speeds convergence; its weight is expressed per prediction target. For class-conditional
networks (``num_classes`` set) labels are replaced by the null class with probability
``cond_drop``, which trains the unconditional model that classifier-free guidance needs
(Ho & Salimans 2022, Algorithm 1); unconditional networks never see labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from diffkit.nn.conditioning import training_labels
from diffkit.param import Prediction, edm_coefficients, network_input, training_target
from diffkit.schedules import DDPMSchedule
from diffkit.schedules.ddpm import interpolate_timestep

NoiseLevels = Literal["uniform", "log_normal"]


@dataclass(frozen=True)
class DDPMObjective:
    schedule: DDPMSchedule
    prediction: Prediction = "eps"
    min_snr_gamma: float | None = None
    num_classes: int | None = None
    cond_drop: float = 0.0
    noise_levels: NoiseLevels = "uniform"
    log_sigma_mean: float = -1.2
    log_sigma_std: float = 1.2

    def __call__(
        self, net: nn.Module, x0: Tensor, cond: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        """Mean loss over a batch x0: (B, ...); a noise level per image, eps ~ N(0, I)."""
        cond = self.labels(cond, generator)
        t, abar = self.levels(x0.shape[0], x0.device, generator)  # (B,), (B,) float64
        eps = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        abar = abar.reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)  # (B, 1, ..., 1)
        xt = abar.sqrt() * x0 + (1 - abar).sqrt() * eps  # q(x_t | x_0), DDPM Eq. 4
        pred = net(network_input(self.prediction, xt, abar), t, cond)
        target = training_target(self.prediction, x0, eps, abar)
        per_item = (pred.float() - target).pow(2).flatten(1).mean(1)  # (B,)
        return (per_item * self.weights(abar.flatten())).mean()

    def levels(
        self, b: int, device: torch.device, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """``b`` noise levels: the timesteps the network sees (B,) (long for ``uniform``,
        real-valued for ``log_normal``) and their abar (B,) float64."""
        table = self.schedule.alphas_cumprod.to(device)
        if self.noise_levels == "uniform":
            t = torch.randint(0, self.schedule.num_steps, (b,), device=device, generator=generator)
            return t, table[t]
        z = torch.randn(b, device=device, generator=generator, dtype=torch.float64)
        sigma = (self.log_sigma_mean + self.log_sigma_std * z).exp()
        abar = (1 / (1 + sigma.square())).clamp(table[-1], table[0])  # sigma^2 = (1 - ab) / ab
        t = interpolate_timestep(-table.log(), abar)
        return t.float(), abar

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
            case "edm":  # the F error is the x0 error over c_out
                return clipped * edm_coefficients(abar)[2].square()
        raise ValueError(self.prediction)
