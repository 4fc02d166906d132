"""DDPM and latent DDPM models at sampling time (training: :mod:`diffkit.methods.generative`)."""

from __future__ import annotations

from typing import ClassVar, get_args

from diffkit.config.run import DDPMRunConfig, SamplerName
from diffkit.methods.pipeline import Pipeline
from diffkit.samplers import ddim_sample, ddpm_sample, make_denoiser
from diffkit.samplers.dpm_solver import dpm_solver_pp_2m
from diffkit.samplers.probability_flow import ddpm_velocity, probability_flow_sample
from diffkit.samplers.table import SAMPLERS
from diffkit.schedules import DDPMSchedule, make_schedule, spaced_timesteps


def schedule_of(cfg: DDPMRunConfig) -> DDPMSchedule:
    d = cfg.diffusion
    return make_schedule(d.schedule, d.num_steps, d.beta_start, d.beta_end)


class DDPMPipeline(Pipeline):
    """A trained DDPM: ancestral DDPM, DDIM, DPM-Solver++(2M), or any ODE solver on its
    probability-flow velocity (:mod:`diffkit.samplers.probability_flow`).

    ``steps`` defaults to T for DDPM and 50 otherwise; a grid of fewer steps than T is
    respaced by ``spacing``. ``clip`` (x0 clamped to [-1, 1]) defaults to on for pixels,
    off for latents.
    """

    SAMPLERS: ClassVar[tuple[str, ...]] = get_args(SamplerName)
    DEFAULT_SAMPLER: ClassVar[str] = "ddim"
    config: DDPMRunConfig

    @property
    def schedule(self) -> DDPMSchedule:
        return schedule_of(self.config)

    def max_steps(self) -> int:
        return self.config.diffusion.num_steps

    def default_steps(self, sampler: str) -> int:
        return self.max_steps() if sampler == "ddpm" else 50

    def planned_nfe(self, sampler: str, steps: int) -> int | None:
        spec = SAMPLERS[sampler]
        if spec.adaptive:
            return None
        if spec.family == "ode":  # the solver to the last grid step, then one DDIM step
            return spec.calls_per_step * (steps - 1) + 1
        return spec.calls_per_step * steps

    def integrate(self, net, x, sampler, steps, opts, generator, on_step):
        sched = self.schedule
        ts = spaced_timesteps(sched.num_steps, steps, opts.spacing)  # type: ignore[arg-type]
        clip = self.codec is None if opts.clip is None else opts.clip
        prediction = self.config.diffusion.prediction
        spec = SAMPLERS[sampler]
        if spec.family == "ode":
            if spec.adaptive:  # only the end points matter
                ts = spaced_timesteps(sched.num_steps, sched.num_steps, "trailing")
            velocity = ddpm_velocity(net, sched, prediction, clip=clip)
            return probability_flow_sample(sampler, velocity, x, ts, sched, rtol=opts.rtol,
                                           atol=opts.atol, on_step=on_step)  # fmt: skip
        denoiser = make_denoiser(net, sched, prediction, clip=clip)
        callback = (lambda i, x, x0: on_step()) if on_step else None
        match sampler:
            case "ddpm":
                x = ddpm_sample(denoiser, x, ts, sched, variance=opts.variance,  # type: ignore[arg-type]
                                generator=generator, callback=callback)  # fmt: skip
            case "ddim":
                x = ddim_sample(denoiser, x, ts, sched, eta=opts.eta, generator=generator,
                                callback=callback)  # fmt: skip
            case "dpm++2m":
                x = dpm_solver_pp_2m(denoiser, x, ts, sched, callback=callback)
        return x, steps
