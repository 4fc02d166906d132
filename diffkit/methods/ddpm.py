"""DDPM and latent DDPM models at sampling time (training: :mod:`diffkit.methods.generative`)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from diffkit.methods.pipeline import Pipeline, SampleOptions
from diffkit.models.contract import DDPMModel
from diffkit.samplers import ddim_sample, ddpm_sample, make_denoiser
from diffkit.samplers.dpm_solver import dpm_solver_pp_2m
from diffkit.samplers.probability_flow import ddpm_velocity, probability_flow_sample
from diffkit.samplers.table import SAMPLERS, family_samplers
from diffkit.schedules import DDPMSchedule, spaced_timesteps
from diffkit.schedules.spacing import karras_timesteps


class DDPMPipeline(Pipeline):
    """A DDPM (own or foreign): ancestral DDPM, DDIM, DPM-Solver++(2M), or any ODE solver on
    its probability-flow velocity (:mod:`diffkit.samplers.probability_flow`).

    ``steps`` defaults to T for DDPM and 50 otherwise; a grid of fewer steps than T is
    respaced by ``spacing``. ``clip`` (x0 clamped to [-1, 1]) defaults to the model's
    (on for pixels, off for latents).
    """

    SAMPLERS: ClassVar[tuple[str, ...]] = family_samplers("ddpm")
    DEFAULT_SAMPLER: ClassVar[str] = "ddim"
    MODEL_OPTIONS: ClassVar[frozenset[str]] = frozenset({"spacing", "clip"})
    model: DDPMModel

    @property
    def schedule(self) -> DDPMSchedule:
        return self.model.schedule

    def options(self, sampler: str, options: dict) -> SampleOptions:
        opts = super().options(sampler, options)
        if sampler == "ddpm" and opts.variance is None and self.model.variance is None:
            raise ValueError(f"this {self.model.name} model learned its reverse variance, "
                             "which diffkit does not use; choose variance fixed_small or "
                             "fixed_large for the ddpm sampler, or another sampler")  # fmt: skip
        if opts.variance == "learned_range" and self.model.variance != "learned_range":
            raise ValueError(f"this {self.model.name} model did not learn its reverse "
                             "variance; choose fixed_small or fixed_large")  # fmt: skip
        return opts

    def clip_rule(self, clip: bool | None):
        """x0's projection: ``clip`` if given, else the model's (its dynamic threshold, or
        its clamp)."""
        if clip is not None:
            return clip
        return self.model.threshold if self.model.threshold is not None else self.model.clip

    def timesteps(self, steps: int, spacing: str | None) -> Tensor:
        """The descending grid of ``steps`` timesteps (S,) under ``spacing`` (None: the
        model's); a ``leading`` grid is shifted by the model's ``steps_offset``."""
        spacing = spacing or self.model.spacing
        if spacing == "karras":
            return karras_timesteps(self.schedule.alphas_cumprod, steps)
        ts = spaced_timesteps(self.schedule.num_steps, steps, spacing)  # type: ignore[arg-type]
        return ts + self.model.steps_offset if spacing == "leading" else ts

    def denoiser(self, net, clip: bool | None = None):
        """``net(x, t, _)`` (the model, guided as wanted) as a
        :data:`~diffkit.samplers.common.Denoiser` with the model's prediction and, unless
        ``clip`` says otherwise, its clipping."""
        return make_denoiser(net, self.schedule, self.model.prediction,
                             clip=self.clip_rule(clip))  # fmt: skip

    def planned_nfe(self, sampler: str, steps: int) -> int | None:
        spec = SAMPLERS[sampler]
        if spec.adaptive:
            return None
        if spec.family == "ode":  # the solver to the last grid step, then one DDIM step
            return spec.calls_per_step * (steps - 1) + 1
        return spec.calls_per_step * steps

    def grid(self, steps: int, spacing: str | None = None) -> Tensor:
        """Grid points of a ``steps``-step run, as the steering of :meth:`generate` counts
        them: the timesteps (S,); point S is clean data."""
        return self.timesteps(steps, spacing)

    def integrate(self, net, x, sampler, steps, opts, generator, on_step, start=0, callback=None):
        sched = self.schedule
        ts = self.timesteps(steps, opts.spacing)
        clip = self.clip_rule(opts.clip)
        prediction = self.model.prediction
        spec = SAMPLERS[sampler]
        if spec.family == "ode":
            if spec.adaptive:  # only the end points matter
                ts = spaced_timesteps(sched.num_steps, sched.num_steps, "trailing")
            velocity = ddpm_velocity(net, sched, prediction, clip=clip)
            return probability_flow_sample(sampler, velocity, x, ts, sched, rtol=opts.rtol,
                                           atol=opts.atol, on_step=on_step, start=start,
                                           callback=callback)  # fmt: skip
        denoiser = self.denoiser(net, clip)
        step = _step_callback(on_step, callback)
        steer = {"start": start, "callback": step}
        match sampler:
            case "ddpm":
                variance = opts.variance or self.model.variance
                x = ddpm_sample(denoiser, x, ts, sched, variance=variance,  # type: ignore[arg-type]
                                generator=generator, **steer)  # fmt: skip
            case "ddim":
                x = ddim_sample(denoiser, x, ts, sched, eta=opts.eta, generator=generator,
                                **steer)  # fmt: skip
            case "dpm++2m":
                x = dpm_solver_pp_2m(denoiser, x, ts, sched, **steer)
        return x, steps - start


def _step_callback(on_step, callback):
    """The DDPM samplers' ``callback(i, x, x0)`` from a progress tick and a steering
    ``callback(i, x)``; None when there is neither."""
    if on_step is None and callback is None:
        return None

    def step(i: int, x: Tensor, x0: Tensor) -> Tensor | None:
        if on_step is not None:
            on_step()
        return callback(i, x) if callback is not None else None

    return step
