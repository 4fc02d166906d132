"""Consistency losses: few-step students of a trained DDPM or rectified flow.

A consistency model f(x_t, t) maps every point of an ODE path to the path's clean end
(Song et al. 2023). Both losses here train a student that starts from its teacher's
weights and reads the same network output the teacher does, as an estimate of clean data:

* :class:`ConsistencyDistillation` (CD; Song et al. 2023, Algorithm 2): noise data to
  grid point n of an N-step grid, take one deterministic teacher step (DDIM on a DDPM,
  Euler on a flow: the same first-order step) to point n + 1, and pull
  ``f(x_n, t_n)`` towards the stop-gradient ``f(x_{n+1}, t_{n+1})``; at the last interval
  the target is the teacher step's clean estimate itself.
* :class:`ConsistencyTuning` (ECT; Geng et al. 2024, "Consistency models made easy"): no
  teacher evaluations: the same data and noise at two noise levels ``sigma_t > sigma_r``,
  ``f(x_t)`` pulled towards the stop-gradient ``f(x_r)``, weighted by
  ``1 / (sigma_t - sigma_r)``. The gap starts at ``r = 0`` for most levels (the target is
  the data: plain denoising, which the teacher already does) and shrinks by ``q`` every
  stage: ``r = t (1 - q^-(stage + 1) (1 + k sigmoid(-b t)))`` in EDM's sigma, k = 8, b = 1.

Both use the pseudo-Huber distance ``sqrt(||a - b||^2 + c^2) - c`` (Song and Dhariwal 2023,
"Improved techniques for training consistency models") and the same dropout mask for both
evaluations. CD's stop-gradient target is the EMA of the student's weights (Song et al.
2023), ECT's the current weights (its EMA decay 0, as Song and Dhariwal recommend).

The two families differ only in :class:`Levels`: where the grid points are, the
coefficients of ``x_t = a_t x_0 + s_t eps`` and the network's clean estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from diffkit.nn.conditioning import training_labels
from diffkit.param import Prediction, network_input, split_prediction, split_variance
from diffkit.schedules import DDPMSchedule

ECT_K = 8.0
ECT_B = 1.0


class Levels:
    """Noise levels of one model family. A level is a tensor in the family's own time
    units (a DDPM timestep, -1 for clean data; a flow time in [0, 1], 1 for clean data);
    ``x_t = a_t x_0 + s_t eps``."""

    def coefficients(self, t: Tensor, ndim: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(a_t, s_t), each (B, 1, ..., 1)."""
        raise NotImplementedError

    def clean(self, t: Tensor) -> Tensor:
        """(B,) bool: the level is clean data."""
        raise NotImplementedError

    def x0(self, net: nn.Module, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """The network's estimate of clean data from ``x`` at ``t`` (gradients kept)."""
        raise NotImplementedError

    def consistency(self, net: nn.Module, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """f(x, t): the clean estimate with the family's boundary condition (f = x on clean
        data)."""
        raise NotImplementedError

    def grid(self, steps: int, device: torch.device) -> Tensor:
        """The ``steps + 1`` levels of an N-step sampling grid, noise first, clean last."""
        raise NotImplementedError

    def sigma(self, t: Tensor) -> Tensor:
        """EDM's noise level s_t / a_t (float64)."""
        raise NotImplementedError

    def from_sigma(self, sigma: Tensor) -> Tensor:
        """The level of noise level ``sigma`` (0: clean data; a DDPM takes the nearest
        timestep, and clean data below its first)."""
        raise NotImplementedError

    def noisy(self, t: Tensor) -> Tensor:
        """``t``, with clean data replaced by the least noisy level the network takes."""
        raise NotImplementedError

    def below(self, t: Tensor, r: Tensor) -> Tensor:
        """``r``, made strictly less noisy than ``t``."""
        return r


def _rows(v: Tensor, ndim: int) -> Tensor:
    """(B,) -> (B, 1, ..., 1): one value per row of an ``ndim``-dimensional batch."""
    return v.reshape(-1, *([1] * (ndim - 1)))


def _view(v: Tensor, ndim: int, dtype: torch.dtype) -> Tensor:
    return _rows(v, ndim).to(dtype)


@dataclass(frozen=True, eq=False)
class DDPMLevels(Levels):
    """A DDPM's integer timesteps 0..T-1 and -1 for clean data (abar = 1)."""

    schedule: DDPMSchedule
    prediction: Prediction

    def _abar(self, t: Tensor) -> Tensor:
        ab = self.schedule.alphas_cumprod.to(t.device)
        return torch.where(t < 0, torch.ones((), dtype=ab.dtype, device=t.device),
                           ab[t.clamp(min=0)])  # fmt: skip

    def coefficients(self, t, ndim, dtype):
        ab = self._abar(t)
        return _view(ab.sqrt(), ndim, dtype), _view((1 - ab).sqrt(), ndim, dtype)

    def clean(self, t):
        return t < 0

    def x0(self, net, x, t, cond):
        abar = _view(self._abar(t), x.ndim, x.dtype)
        out = net(network_input(self.prediction, x, abar), t.clamp(min=0), cond)
        pred, _ = split_variance(out.to(x.dtype), x)
        return split_prediction(pred, self.prediction, x, abar)[1]

    def consistency(self, net, x, t, cond):
        from diffkit.samplers.consistency import lcm_boundary

        c_skip, c_out = lcm_boundary(t.clamp(min=0))
        return _view(c_skip, x.ndim, x.dtype) * x + _view(c_out, x.ndim, x.dtype) * self.x0(
            net, x, t, cond
        )

    def grid(self, steps, device):
        from diffkit.schedules import spaced_timesteps

        ts = spaced_timesteps(self.schedule.num_steps, steps, "trailing")
        return torch.cat([ts, ts.new_full((1,), -1)]).to(device)

    def sigma(self, t):
        ab = self._abar(t).double()
        return ((1 - ab) / ab).sqrt()

    def from_sigma(self, sigma):
        table = self.schedule.sigmas.to(sigma.device)  # (T,) increasing
        nearest = table.log()[None, :] - sigma.double().clamp(min=1e-12).log()[:, None]
        t = nearest.abs().argmin(dim=1)
        return torch.where(sigma < table[0], torch.full_like(t, -1), t)

    def noisy(self, t):
        return t.clamp(min=0)

    def below(self, t, r):
        """The nearest timestep may round up to t itself: one step down instead (to clean
        data below timestep 0)."""
        return torch.where(r >= t, t - 1, r)


@dataclass(frozen=True, eq=False)
class FlowLevels(Levels):
    """A rectified flow's times (noise at 0, clean data at 1): ``x_t = t x_1 + (1 - t) eps``."""

    time_scale: float = 1000.0

    def coefficients(self, t, ndim, dtype):
        return _view(t, ndim, dtype), _view(1 - t, ndim, dtype)

    def clean(self, t):
        return t >= 1

    def x0(self, net, x, t, cond):
        v = net(x, t.to(x.dtype) * self.time_scale, cond).to(x.dtype)
        return x + _view(1 - t, x.ndim, x.dtype) * v

    def consistency(self, net, x, t, cond):
        return self.x0(net, x, t, cond)  # x + (1 - t) v is x itself at t = 1

    def grid(self, steps, device):
        return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64, device=device)

    def sigma(self, t):
        t = t.double()
        return (1 - t) / t

    def from_sigma(self, sigma):
        return 1 / (1 + sigma.double())

    def noisy(self, t):
        return t.clamp(max=1 - 1e-4)


def pseudo_huber(diff: Tensor, c: float) -> Tensor:
    """(B,): ``sqrt(||diff_b||^2 + c^2) - c`` per item (Song and Dhariwal 2023, Eq. 8)."""
    return (diff.float().flatten(1).pow(2).sum(1) + c * c).sqrt() - c


def huber_constant(shape: tuple[int, ...], c: float | None) -> float:
    """``c``, or 0.00054 sqrt(d) for items of ``shape`` (d values each)."""
    return c if c is not None else 0.00054 * math.sqrt(math.prod(shape))


@contextmanager
def same_randomness(device: torch.device) -> Iterator[None]:
    """Run a block and restore the global random state afterwards, so the next forward
    pass draws the same dropout mask (the target's and the student's)."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        yield


@dataclass(eq=False)
class _ConsistencyLoss:
    levels: Levels
    num_classes: int | None = None
    cond_drop: float = 0.0
    huber_c: float | None = None

    def labels(self, cond: Tensor | None, generator: torch.Generator) -> Tensor | None:
        """The labels both networks see: None if unconditional, else with dropped ones
        (so the student keeps classifier-free guidance)."""
        return training_labels(cond, self.num_classes, self.cond_drop, generator)

    def distance(self, pred: Tensor, target: Tensor) -> Tensor:
        return pseudo_huber(pred - target, huber_constant(tuple(pred.shape[1:]), self.huber_c))


@dataclass(eq=False)
class ConsistencyDistillation(_ConsistencyLoss):
    """CD with a frozen ``teacher`` (the same kind of network, evaluated under no_grad),
    along a ``teacher_steps``-step grid; ``guidance`` > 1 bakes the teacher's
    classifier-free guidance into the student (class-conditional teachers)."""

    teacher: nn.Module | None = None
    teacher_steps: int = 50
    guidance: float = 1.0
    target: str = "ema"  # the target network: the EMA of the weights, or the live weights
    _ema: nn.Module | None = field(default=None, repr=False)

    def begin_step(self, step: int, ema: nn.Module) -> None:
        """The training loop announces each optimizer step with its EMA network (the
        target, as in Song et al. 2023; it is checkpointed, so a resume is exact)."""
        self._ema = ema

    def __call__(self, net: nn.Module, x0: Tensor, cond: Tensor | None,
                 generator: torch.Generator) -> Tensor:  # fmt: skip
        """Mean loss over a batch x0 (B, ...)."""
        lv, b = self.levels, x0.shape[0]
        y = self.labels(cond, generator)
        grid = lv.grid(self.teacher_steps, x0.device)  # (N + 1,) noise first
        n = torch.randint(0, self.teacher_steps, (b,), device=x0.device, generator=generator)
        t, t_next = grid[n], grid[n + 1]  # (B,) each; t_next is less noisy
        eps = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        a, s = lv.coefficients(t, x0.ndim, x0.dtype)
        xt = a * x0 + s * eps  # (1) x_{t_n} ~ q(x_t | x_0)
        with same_randomness(x0.device), torch.no_grad():
            d = self._teacher_x0(xt, t, y)  # (2) the teacher's clean estimate
            a2, s2 = lv.coefficients(t_next, x0.ndim, x0.dtype)
            x_next = a2 * d + s2 * (xt - a * d) / s  # (3) DDIM / Euler step to t_{n+1}
            target_net = self._ema if self.target == "ema" and self._ema is not None else net
            f_next = lv.consistency(target_net, x_next, t_next, y)  # (4) stop-gradient target
            clean = _rows(lv.clean(t_next), x0.ndim)
            target = torch.where(clean, x_next, f_next)
        pred = lv.consistency(net, xt, t, y)  # (5) f(x_{t_n}, t_n), same dropout mask
        return self.distance(pred, target).mean()

    def _teacher_x0(self, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
        assert self.teacher is not None, "consistency distillation needs its teacher"
        if y is None or self.guidance == 1.0:
            return self.levels.x0(self.teacher, x, t, y)
        null = torch.full_like(y, self.num_classes)  # type: ignore[arg-type]
        both = self.levels.x0(self.teacher, torch.cat([x, x]), torch.cat([t, t]),
                              torch.cat([y, null]))  # fmt: skip
        d_c, d_u = both.chunk(2)
        guided = d_u + self.guidance * (d_c - d_u)
        keep = _rows(y == self.num_classes, x.ndim)
        return torch.where(keep, d_u, guided)  # a dropped label stays unconditional


@dataclass(eq=False)
class ConsistencyTuning(_ConsistencyLoss):
    """ECT: consistency training from the teacher's weights, noise levels ln sigma ~
    N(``log_sigma_mean``, ``log_sigma_std``), the gap schedule of stage
    ``step // stage_steps`` (:meth:`begin_step`)."""

    q: float = 2.0
    stage_steps: int = 250
    log_sigma_mean: float = -1.1
    log_sigma_std: float = 2.0
    stage: int = field(default=0)

    def begin_step(self, step: int, ema: nn.Module | None = None) -> None:
        """The training loop announces each optimizer step (resume-exact)."""
        self.stage = step // self.stage_steps

    def r_of(self, sigma_t: Tensor) -> Tensor:
        """The lower noise level r(t) of the current stage (0: clean data)."""
        decay = self.q ** -(self.stage + 1)
        ratio = 1 - decay * (1 + ECT_K * torch.sigmoid(-ECT_B * sigma_t))
        return (sigma_t * ratio).clamp(min=0)

    def __call__(self, net: nn.Module, x0: Tensor, cond: Tensor | None,
                 generator: torch.Generator) -> Tensor:  # fmt: skip
        """Mean loss over a batch x0 (B, ...)."""
        lv, b = self.levels, x0.shape[0]
        y = self.labels(cond, generator)
        z = torch.randn((b,), device=x0.device, generator=generator, dtype=torch.float64)
        t = lv.noisy(lv.from_sigma((self.log_sigma_mean + self.log_sigma_std * z).exp()))
        sigma_t = lv.sigma(t)
        r = lv.below(t, lv.from_sigma(self.r_of(sigma_t)))
        eps = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        a, s = lv.coefficients(t, x0.ndim, x0.dtype)
        ar, sr = lv.coefficients(r, x0.ndim, x0.dtype)
        xt, xr = a * x0 + s * eps, ar * x0 + sr * eps  # (1) the same noise at both levels
        with same_randomness(x0.device), torch.no_grad():
            f_r = lv.consistency(net, xr, r, y)  # (2) stop-gradient target
            clean = _rows(lv.clean(r), x0.ndim)
            target = torch.where(clean, x0, f_r)
        pred = lv.consistency(net, xt, t, y)  # (3) f(x_t, t), same dropout mask
        gap = (sigma_t - lv.sigma(r)).clamp(min=1e-6)
        return (self.distance(pred, target) / gap.to(torch.float32)).mean()
