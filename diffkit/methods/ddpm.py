"""DDPM and latent DDPM models at sampling time (training: :mod:`diffkit.methods.generative`)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from diffkit.methods.pipeline import Pipeline, SampleOptions, step_callback
from diffkit.models.contract import DDPMModel
from diffkit.objectives.denoise import image_sigma
from diffkit.samplers import make_denoiser
from diffkit.samplers.probability_flow import ddpm_velocity, probability_flow_sample
from diffkit.samplers.registry import load, sampler_spec
from diffkit.schedules import DDPMSchedule, spaced_timesteps
from diffkit.schedules.forward import ForwardProcess
from diffkit.schedules.spacing import karras_timesteps

PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
"""diffusers' ``prediction_type`` of each of diffkit's predictions (EDM has none)."""


class DDPMPipeline(Pipeline):
    """A DDPM (own or foreign): any sampler of the ``ddpm`` family, or any ODE solver on its
    probability-flow velocity (:mod:`diffkit.samplers.probability_flow`).

    ``steps`` defaults to T for ancestral sampling and to each other sampler's declared
    steps (:func:`~diffkit.samplers.registry.declared_steps`); a grid of fewer steps than T is
    respaced by ``spacing``. ``clip`` (x0 clamped to [-1, 1]) defaults to the model's
    (on for pixels, off for latents).
    """

    FAMILY: ClassVar[str] = "ddpm"
    TITLE: ClassVar[str] = "DDPM"
    MODEL_OPTIONS: ClassVar[frozenset[str]] = frozenset({"spacing", "clip"})
    model: DDPMModel

    @property
    def schedule(self) -> DDPMSchedule:
        return self.model.schedule

    def options(self, sampler: str, options: dict) -> SampleOptions:
        opts = super().options(sampler, options)
        learned = opts.variance is None and self.model.variance is None
        if "variance" in self.reads(sampler) and learned:
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
        spec = sampler_spec(sampler)
        if spec.adaptive:
            return None
        if spec.family == "ode":  # the solver to the last grid step, then one DDIM step
            return spec.calls_per_step * (steps - 1) + 1
        return spec.calls_per_step * steps

    def noise_level(self, t: Tensor) -> Tensor:
        """The schedule's sigma at the nearest integer timestep."""
        sigmas = self.schedule.sigmas.to(t.device)
        return sigmas[t.double().round().long().clamp(0, sigmas.shape[0] - 1)]

    def noised(self, images: Tensor, point: Tensor | float, noise: Tensor) -> Tensor:
        """sqrt(abar) x0 + sqrt(1 - abar) eps at timestep ``point`` (DDPM Eq. 4)."""
        t = torch.full((images.shape[0],), int(point), dtype=torch.long)
        return self.schedule.q_sample(images, t, noise)

    def one_step_x0(self, xt: Tensor, point: float, net) -> Tensor:
        """Tweedie's ``(x_t - sqrt(1 - abar) eps) / sqrt(abar)`` at timestep ``point``."""
        t = torch.full((xt.shape[0],), int(point), device=xt.device, dtype=torch.long)
        return self.denoiser(net)(xt, t)[1]

    def forward_process(self) -> ForwardProcess:
        """The DDPM's own schedule: ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``."""
        return ForwardProcess(self.schedule)

    def same_process(self, other: Pipeline) -> str | None:
        """The same prediction target (eps, x0, v, EDM) and noise schedule."""
        mine, theirs = self.model, other.model
        if mine.prediction != theirs.prediction:  # type: ignore[attr-defined]
            return f"predicts {theirs.prediction}, this model {mine.prediction}"  # type: ignore[attr-defined]
        if not torch.equal(self.schedule.alphas_cumprod, other.schedule.alphas_cumprod):  # type: ignore[attr-defined]
            return "was trained on another noise schedule"
        return None

    def posterior_mean(self, net, y: Tensor, sigma: float) -> Tensor:
        """Tweedie: y scaled to x_t at the nearest timestep (:func:`ddpm_timestep`; exact on
        the grid's noise levels, within half a grid step in log sigma between them), its x0
        (clamped as the model samples)."""
        sched = self.schedule
        denoise = self.denoiser(net)
        t = ddpm_timestep(sched, sigma)
        ab = float(sched.alphas_cumprod[t])
        ts = torch.full((y.shape[0],), t, device=y.device, dtype=torch.long)
        return denoise(math.sqrt(ab) * y.to(self.device), ts)[1]

    def resampler(self, steps: int):
        """RePaint walks back along the forward process, over ancestral steps."""
        from diffkit.edit.repaint import repaint_sample

        self.check("ddpm", steps)
        grid = self.grid(steps)

        def resample(net, noise: Tensor, known: Tensor, mask: Tensor, **kwargs) -> Tensor:
            return repaint_sample(self.denoiser(net), noise, grid, self.schedule, known, mask,
                                  **kwargs)  # fmt: skip

        return resample

    def grid(self, steps: int, spacing: str | None = None) -> Tensor:
        """Grid points of a ``steps``-step run, as the steering of :meth:`generate` counts
        them: the timesteps (S,); point S is clean data."""
        return self.timesteps(steps, spacing)

    def integrate(self, net, x, sampler, steps, opts, generator, on_step, start=0, callback=None):
        sched = self.schedule
        ts = self.timesteps(steps, opts.spacing)
        clip = self.clip_rule(opts.clip)
        prediction = self.model.prediction
        spec = load(sampler)
        if spec.family == "x0":
            return self._x0_sample(net, x, spec, ts, clip, generator, on_step, start, callback)
        if spec.family == "ode":
            if spec.adaptive:  # only the end points matter
                ts = spaced_timesteps(sched.num_steps, sched.num_steps, "trailing")
            velocity = ddpm_velocity(net, sched, prediction, clip=clip)
            return probability_flow_sample(sampler, velocity, x, ts, sched, rtol=opts.rtol,
                                           atol=opts.atol, on_step=on_step, start=start,
                                           callback=callback)  # fmt: skip
        # A sampler of the ddpm family: the options it reads (None: the model's own, as for
        # the grid's spacing), and the generator if it draws noise.
        kwargs = {o: getattr(opts, o) for o in spec.options if o != "spacing"}
        kwargs = {o: getattr(self.model, o) if v is None else v for o, v in kwargs.items()}
        if spec.stochastic:
            kwargs["generator"] = generator
        x = spec.fn(self.denoiser(net, clip), x, ts, sched, start=start,
                    callback=step_callback(on_step, callback), **kwargs)  # fmt: skip
        return x, steps - start

    def _x0_sample(self, net, x, spec, ts, clip, generator, on_step, start, callback):
        """A sampler of the ``x0`` family over the timesteps ``ts``: the consistency
        function ``c_skip x_t + c_out x0_hat`` (:func:`~diffkit.samplers.consistency.
        lcm_boundary`), noise put back with q(x_t | x_0)."""
        from diffkit.samplers.consistency import lcm_boundary

        denoiser = self.denoiser(net, clip)
        sched = self.schedule

        def denoise(xt: Tensor, i: int) -> Tensor:
            t = torch.full((xt.shape[0],), int(ts[i]), device=xt.device, dtype=torch.long)
            c_skip, c_out = lcm_boundary(ts[i])
            return (c_skip * xt + c_out * denoiser(xt, t)[1]).to(xt.dtype)

        def renoise(x0: Tensor, i: int, z: Tensor) -> Tensor:
            t = torch.full((x0.shape[0],), int(ts[i]), device=x0.device, dtype=torch.long)
            return sched.q_sample(x0, t, z)

        x = spec.fn(denoise, renoise, x, len(ts), generator=generator, start=start,
                    callback=step_callback(on_step, callback))  # fmt: skip
        return x, len(ts) - start

    # Export to diffusers (diffkit.external.export, which imports diffusers and passes it)

    DIFFUSERS_TAG: ClassVar[str] = "ddpm"

    def diffusers_scheduler(self, diffusers: Any) -> Any:
        """A ``DDPMScheduler`` of the run's conventions: the training betas (named when
        diffusers' schedule gives the same float32 values, else listed), prediction type,
        x0 clipping (pixels) and diffkit's trailing spacing."""
        model = self.model
        d = self.config.diffusion  # type: ignore[union-attr]
        betas = model.schedule.betas
        common = {"num_train_timesteps": d.num_steps,
                  "prediction_type": PREDICTION_TYPES[model.prediction],
                  "clip_sample": model.clip, "clip_sample_range": 1.0,
                  "variance_type": "fixed_small", "timestep_spacing": model.spacing,
                  "steps_offset": model.steps_offset}  # fmt: skip
        named = {"linear": {"beta_schedule": "linear", "beta_start": float(betas[0]),
                            "beta_end": float(betas[-1])},
                 "cosine": {"beta_schedule": "squaredcos_cap_v2"}}.get(d.schedule)  # fmt: skip
        if named is not None:
            sched = diffusers.DDPMScheduler(**common, **named)
            if torch.allclose(sched.betas.double(), betas, rtol=1e-6, atol=1e-9):
                return sched
        return diffusers.DDPMScheduler(**common, trained_betas=betas.tolist())

    def card_usage(self) -> tuple[str, list[str]]:
        steps = f", num_inference_steps={min(50, self.max_steps())}"
        swap = ["# DDIM instead of the ancestral DDPM steps (deterministic at eta = 0):",
                "from diffusers import DDIMScheduler",
                "pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)"]  # fmt: skip
        return steps, swap

    def card_rows(self) -> list[tuple[str, str]]:
        d = self.config.diffusion  # type: ignore[union-attr]
        return [("schedule", f"{d.schedule}, T = {d.num_steps}"),
                ("prediction", d.prediction), ("x0 clipped", "yes" if self.model.clip else "no"),
                ("scheduler", "DDPMScheduler, trailing spacing")]  # fmt: skip


def ddpm_timestep(schedule: DDPMSchedule, sigma: float) -> int:
    """The timestep whose noise level is nearest ``image_sigma(sigma)`` in log space:
    x_t / sqrt(abar_t) = x0 + sigma_t eps with sigma_t = sqrt((1 - abar_t) / abar_t)."""
    levels = schedule.sigmas.log()  # (T,) increasing
    return int((levels - math.log(image_sigma(sigma))).abs().argmin())
