"""Every method diffkit trains, declared once.

A :class:`Method` says what the ``method`` field of a run's config means: its config class,
the training loss it optimises, how its checkpoint's network becomes a sampling
:class:`~diffkit.models.contract.Model` (generative methods only), the ``runs/`` sub-folder
its runs go to, and the CLI command that trains it. Code that needs any of these asks
:data:`METHODS` instead of comparing method names; a new method is one entry here plus its
own module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from torch import nn

from diffkit.config.run import (
    ClassifierRunConfig,
    ControlNetRunConfig,
    DDPMRunConfig,
    DenoiserRunConfig,
    FlowRunConfig,
    GenerativeRunConfig,
    PairsConfig,
    VAERunConfig,
)
from diffkit.models.contract import DDPMModel, Family, FlowModel, Model
from diffkit.objectives.classify import ClassifierObjective
from diffkit.objectives.ddpm import DDPMObjective
from diffkit.objectives.denoise import DenoiseObjective
from diffkit.objectives.flow import FlowObjective
from diffkit.objectives.vae import VAEObjective
from diffkit.schedules import DDPMSchedule, make_schedule

if TYPE_CHECKING:
    from diffkit.models.codec import Codec

Space = Literal["pixel", "latent", "any"]


@dataclass(frozen=True)
class Method:
    """One method. ``objective(cfg, paired)`` builds its loss (``paired``: trained on
    reflow pairs); ``model(cfg, net, codec)`` turns a loaded network into a Model (None:
    not a generative model). ``space`` is where it learns: pixels, a VAE's latents, or
    either (by the config's ``latent`` section); ``family`` the model family it trains (None:
    not a generative model)."""

    name: str
    config: type
    folder: str
    command: str
    space: Space = "pixel"
    objective: Callable[[Any, bool], Any] | None = None
    model: Callable[[Any, nn.Module, Codec | None], Model] | None = None
    family: Family | None = None

    def runs_folder(self, cfg: Any) -> str:
        """The ``runs/`` sub-folder of a run of this method; a reflowed (or reflow-
        distilled) flow goes to ``reflow``, a consistency student to ``distill``."""
        if getattr(cfg, "distill", None) is not None:
            return "distill"
        return "reflow" if getattr(cfg, "reflow", None) is not None else self.folder

    @property
    def generative(self) -> bool:
        return self.model is not None


def schedule_of(cfg: DDPMRunConfig) -> DDPMSchedule:
    d = cfg.diffusion
    return make_schedule(d.schedule, d.num_steps, d.beta_start, d.beta_end)


def _ddpm_objective(cfg: DDPMRunConfig, paired: bool) -> DDPMObjective:
    d = cfg.diffusion
    return DDPMObjective(schedule_of(cfg), d.prediction, d.min_snr_gamma, cfg.num_classes,
                         cfg.train.cond_drop, d.noise_levels, d.log_sigma_mean,
                         d.log_sigma_std)  # fmt: skip


def _flow_objective(cfg: FlowRunConfig, paired: bool) -> FlowObjective:
    f = cfg.flow
    distill = cfg.reflow.distill_steps if cfg.reflow is not None else None
    return FlowObjective(f.time_sampling, f.logit_mean, f.logit_std, cfg.num_classes,
                         cfg.train.cond_drop, paired=paired, distill_steps=distill)  # fmt: skip


STUDENT_SAMPLER = {"ddpm": "ddim", "flow": "consistency"}
"""A consistency student's default sampler per family, by measurement (docs/benchmarks.md
section 20): on a DDPM, DDIM, which jumps to the student's clean estimate and renoises with
the path's own noise; on a flow, the consistency sampler's fresh noise."""


def student_sampler(cfg: GenerativeRunConfig) -> str:
    """A consistency student's default sampler: its config's, else its family's."""
    assert cfg.distill is not None
    return cfg.distill.sampler or STUDENT_SAMPLER[method_of(cfg.method).family]  # type: ignore[index]


def _common(cfg: GenerativeRunConfig, net: nn.Module, codec: Codec | None) -> dict:
    """The Model fields every generative method fills alike; a consistency student samples
    with its own sampler (:func:`student_sampler`) at its own steps by default."""
    own = {"steps": cfg.distill.steps, "sampler": student_sampler(cfg)} if cfg.distill else {}
    return {"net": net, "sample_shape": cfg.sample_shape, "codec": codec,
            "conditioning": "class" if cfg.num_classes else "none",
            "num_classes": cfg.num_classes, "name": cfg.method, **own}  # fmt: skip


def _ddpm_model(cfg: DDPMRunConfig, net: nn.Module, codec: Codec | None) -> DDPMModel:
    return DDPMModel(**_common(cfg, net, codec), schedule=schedule_of(cfg),
                     prediction=cfg.diffusion.prediction, clip=codec is None)  # fmt: skip


def _flow_model(cfg: FlowRunConfig, net: nn.Module, codec: Codec | None) -> FlowModel:
    common = _common(cfg, net, codec)
    if cfg.reflow is not None and cfg.reflow.distill_steps:
        common["steps"] = cfg.reflow.distill_steps
    return FlowModel(**common)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ddpm", DDPMRunConfig, "ddpm", "train ddpm", "pixel", _ddpm_objective, _ddpm_model,
               DDPMModel.family),
        Method("ldm", DDPMRunConfig, "ldm", "train ldm", "latent", _ddpm_objective, _ddpm_model,
               DDPMModel.family),
        Method("rf", FlowRunConfig, "rf", "train rf", "any", _flow_objective, _flow_model,
               FlowModel.family),
        Method("vae", VAERunConfig, "vae", "train vae",
               objective=lambda cfg, _: VAEObjective(cfg.kl_weight, cfg.recon_loss)),
        Method("classifier", ClassifierRunConfig, "classifier", "train classifier",
               objective=lambda cfg, _: ClassifierObjective(cfg.max_shift)),
        Method("pairs", PairsConfig, "pairs", "reflow make-pairs"),
        Method("controlnet", ControlNetRunConfig, "controlnet", "train controlnet"),
        Method("denoiser", DenoiserRunConfig, "denoiser", "train denoiser",
               objective=lambda cfg, _: DenoiseObjective(
                   cfg.noise.sigma_min, cfg.noise.sigma_max, cfg.noise.sigma_input,
                   cfg.noise.target, cfg.noise.pure_noise)),
    )
}  # fmt: skip
"""Every method, by the name a run's config records in its ``method`` field."""


def method_of(name: object) -> Method:
    """The method a config names; KeyError-free: ValueError naming the known ones."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"unknown method {name!r}; diffkit knows {', '.join(METHODS)}")
    return METHODS[name]


def method_objective(cfg: Any, paired: bool = False) -> Any:
    """The training loss of a config's method."""
    objective = method_of(cfg.method).objective
    assert objective is not None, f"{cfg.method} trains nothing"
    return objective(cfg, paired)


def generative_methods() -> list[str]:
    return [m.name for m in METHODS.values() if m.generative]


def method_for(config: type, latent: bool) -> Method:
    """The method a config class trains in pixel (``latent`` False) or latent space."""
    want = "latent" if latent else "pixel"
    for m in METHODS.values():
        if m.config is config and m.space in (want, "any"):
            return m
    raise ValueError(f"no {want}-space method takes a {config.__name__}")
