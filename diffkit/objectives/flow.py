"""The rectified-flow loss (Liu, Gong and Liu 2022, Eq. 1), plain or on fixed pairs (reflow).

With noise x_0 ~ N(0, I), data x_1 and ``x_t = t x_1 + (1 - t) x_0`` the network regresses
the constant velocity of the straight path: ``E || (x_1 - x_0) - v(x_t, t) ||^2``.
A 1-rectified flow draws x_0 independently of x_1 each step; reflow (Sec. 2.3) trains on
fixed pairs (x_0, x_1) that a previous flow's ODE produced, which straightens the paths.
Time sampling and the k-step distillation grid: :func:`diffkit.schedules.flow.sample_flow_time`.
Class labels are dropped to the null class with probability ``cond_drop`` (CFG training),
as in :class:`diffkit.objectives.ddpm.DDPMObjective`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from diffkit.nn.conditioning import training_labels
from diffkit.samplers.common import NET_TIME_SCALE
from diffkit.schedules.flow import TimeSampling, sample_flow_time


@dataclass(frozen=True)
class FlowObjective:
    time_sampling: TimeSampling = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    num_classes: int | None = None
    cond_drop: float = 0.0
    paired: bool = False  # batches are (B, 2, ...) stacks of (noise, data)
    distill_steps: int | None = None  # train only at the start times of a k-step sampler

    def __call__(
        self, net: nn.Module, x: Tensor, cond: Tensor | None, generator: torch.Generator
    ) -> Tensor:
        """Mean loss over a batch of data x: (B, ...), or of pairs (B, 2, ...) if ``paired``."""
        if self.paired:
            x0, x1 = x[:, 0], x[:, 1]
        else:
            x1 = x
            x0 = torch.randn(x1.shape, device=x1.device, generator=generator, dtype=x1.dtype)
        b = x1.shape[0]
        cond = self.labels(cond, generator)
        t = sample_flow_time(
            self.time_sampling, b, device=x1.device, generator=generator,
            mean=self.logit_mean, std=self.logit_std, grid=self.distill_steps,
        ).to(x1.dtype)  # fmt: skip
        tb = t.reshape(b, *([1] * (x1.ndim - 1)))
        xt = tb * x1 + (1 - tb) * x0
        pred = net(xt, t * NET_TIME_SCALE, cond)
        return (pred.float() - (x1 - x0).float()).pow(2).mean()

    def labels(self, cond: Tensor | None, generator: torch.Generator) -> Tensor | None:
        """The labels the network sees: None if unconditional, else with dropped ones."""
        return training_labels(cond, self.num_classes, self.cond_drop, generator)
