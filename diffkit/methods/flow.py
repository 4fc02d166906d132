"""Rectified flows (pixel or latent, 1-RF, reflowed or distilled) at sampling time."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from diffkit.methods.pipeline import Pipeline, step_callback
from diffkit.models.conditioning import Cond
from diffkit.models.contract import FlowModel
from diffkit.objectives.denoise import image_sigma
from diffkit.samplers.common import make_velocity
from diffkit.samplers.ode import Velocity, euler_straightness, solve
from diffkit.samplers.registry import sampler_spec
from diffkit.schedules.flow import flow_time_grid
from diffkit.schedules.forward import ForwardProcess


class FlowPipeline(Pipeline):
    """A rectified flow, sampled by integrating its velocity from noise (t = 0) to data
    (t = 1) with an ODE solver on a uniform grid of ``steps`` steps (default: the solver's
    declared steps, 10 Euler steps; a distilled model's own k)."""

    FAMILY: ClassVar[str] = "flow"
    TITLE: ClassVar[str] = "flow"
    model: FlowModel

    def planned_nfe(self, sampler: str, steps: int) -> int | None:
        per_step = sampler_spec(sampler).calls_per_step
        return None if per_step is None else per_step * steps

    def velocity(self, cond: Cond | None = None, guidance: float = 1.0) -> Velocity:
        """The (guided) velocity field ``v(x, t)``, t in [0, 1] (reflow measures its
        straightness along Euler paths)."""
        return make_velocity(self.network(cond, guidance), time_scale=self.model.time_scale)

    @torch.no_grad()
    def euler_measured(
        self, noise: Tensor, steps: int, *, labels: Tensor | None = None, guidance: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Euler from ``noise`` (B, ...) over ``steps`` steps, measuring each path's
        straightness S along the way (:func:`~diffkit.samplers.ode.euler_straightness`):
        the samples (B, ...) on the model's device and S (B,)."""
        cond = self._condition(labels, None, noise.shape[0])
        x = noise.to(self.device)
        return euler_straightness(self.velocity(cond, guidance), x, flow_time_grid(steps))

    def noise_level(self, t: Tensor) -> Tensor:
        """(1 - t) / t for x_t = t x_1 + (1 - t) eps (infinite at the noise end)."""
        tt = t.double() / self.model.time_scale
        return (1 - tt) / tt

    def noised(self, images: Tensor, point: Tensor | float, noise: Tensor) -> Tensor:
        """``t x_1 + (1 - t) x_0`` at time ``point`` (noise x_0 at t = 0)."""
        tau = float(point)
        return tau * images + (1 - tau) * noise

    def one_step_x0(self, xt: Tensor, point: float, net) -> Tensor:
        """``x_t + (1 - t) v``: one Euler step to t = 1."""
        velocity = make_velocity(net, time_scale=self.model.time_scale)
        tau = torch.full((xt.shape[0],), float(point), device=xt.device)
        return xt + (1 - float(point)) * velocity(xt, tau)

    def forward_process(self) -> ForwardProcess:
        """Rectified-flow interpolation (counted from the image: diffkit time ``1 - t``)."""
        return ForwardProcess(None)

    def same_process(self, other: Pipeline) -> str | None:
        """The same time scale of the network's time input."""
        if self.model.time_scale != other.model.time_scale:  # type: ignore[attr-defined]
            return "takes its time on another scale"
        return None

    def posterior_mean(self, net, y: Tensor, sigma: float) -> Tensor:
        """Tweedie: x_t = t x1 + (1 - t) eps, so x_t / t = x1 + s eps with s = (1 - t) / t,
        i.e. t = 1 / (1 + s) exactly; x1 = x_t + (1 - t) v(x_t, t)."""
        t = 1 / (1 + image_sigma(sigma))
        xt = t * y.to(self.device)
        ts = torch.full((y.shape[0],), t * self.model.time_scale, device=y.device)
        return xt + (1 - t) * net(xt, ts, None)

    def resampler(self, steps: int):
        """Refused: a flow has no forward process to walk back with."""
        raise ValueError("RePaint resampling needs a DDPM; a flow inpaints by replacement")

    def grid(self, steps: int, spacing: str | None = None) -> Tensor:
        """Grid points of a ``steps``-step run: the flow times (steps + 1,), noise first."""
        return flow_time_grid(steps)

    def integrate(self, net, x, sampler, steps, opts, generator, on_step, start=0, callback=None):
        times = flow_time_grid(steps)
        velocity = make_velocity(net, time_scale=self.model.time_scale)
        spec = sampler_spec(sampler)
        if spec.family == "x0":  # grid point i at time i / steps; the last is clean data
            from diffkit.samplers.registry import load

            def denoise(xt: Tensor, i: int) -> Tensor:
                t = float(times[i])
                return xt + (1 - t) * velocity(xt, torch.full((xt.shape[0],), t, device=xt.device))

            def renoise(x1: Tensor, i: int, z: Tensor) -> Tensor:
                t = float(times[i])
                return t * x1 + (1 - t) * z

            x = load(sampler).fn(denoise, renoise, x, steps, generator=generator, start=start,
                                 callback=step_callback(on_step, callback))  # fmt: skip
            return x, steps - start
        return solve(sampler, velocity, x, times, rtol=opts.rtol, atol=opts.atol,
                     on_step=on_step, start=start, callback=callback)  # fmt: skip

    # Export to diffusers (diffkit.external.export, which imports diffusers and passes it)

    DIFFUSERS_TAG: ClassVar[str] = "rectified-flow"

    def diffusers_scheduler(self, diffusers: Any) -> Any:
        """diffusers' flow-matching Euler scheduler (the exported pipeline runs it on
        diffkit's uniform grid)."""
        return diffusers.FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=int(self.model.time_scale), shift=1.0)  # fmt: skip

    def card_usage(self) -> tuple[str, list[str]]:
        return "", []  # the steps default to the model's; no other scheduler to swap in

    def card_rows(self) -> list[tuple[str, str]]:
        return [("scheduler", "FlowMatchEulerDiscreteScheduler"),
                ("default steps", str(self.model.default_steps(self.DEFAULT_SAMPLER)))]  # fmt: skip
