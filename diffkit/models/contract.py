"""The model contract: what a sampler needs to know about a network, and nothing else.

A :class:`Model` is a network ``raw(x, t, cond) -> output`` plus its conventions: the
sample shape, how it is conditioned, an optional codec that decodes its latents, and for
each family the rest of what its samplers read:

* :class:`DDPMModel`: a discrete schedule (``t`` integer timesteps 0..T-1, noise at T-1),
  the prediction kind (eps, x0, v) and whether x0 is clamped to the data range;
* :class:`FlowModel`: a rectified flow (``t`` in [0, 1], noise at 0, the network sees
  ``time_scale * t``) whose output is the velocity ``x_1 - x_0``.

diffkit's own runs become one through :func:`diffkit.methods.load.load_pipeline`; a
network trained elsewhere becomes one by overriding :meth:`Model.raw` alone (the way
k-diffusion's ``OpenAIDenoiser`` overrides ``get_eps``): :mod:`diffkit.external.diffusers`
calls a diffusers UNet and splits off its learned variance. Every sampler of the model's
family (:mod:`diffkit.samplers.registry`) then works on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from torch import Tensor, nn

from diffkit.models.conditioning import Cond, ConditionKind, null_class
from diffkit.param import Prediction
from diffkit.samplers import registry
from diffkit.schedules import DDPMSchedule
from diffkit.schedules.spacing import Spacing

Variance = Literal["fixed_small", "fixed_large", "learned_range"]

if TYPE_CHECKING:
    from diffkit.models.codec import Codec
    from diffkit.samplers.common import DynamicThreshold

Family = Literal["ddpm", "flow"]


@dataclass(eq=False, kw_only=True)
class Model:
    """A network and its conventions. ``num_classes`` K (class models): labels 0..K-1 and
    the null class K, which classifier-free guidance uses as the unconditional partner."""

    net: nn.Module
    sample_shape: tuple[int, ...]  # one sample the network generates: (C, H, W) or a latent
    conditioning: ConditionKind = "none"
    num_classes: int | None = None
    codec: Codec | None = None  # decodes latents to images; None: pixel space
    name: str = "model"  # what it is, for messages ("ddpm", "diffusers DDPMPipeline", ...)
    steps: int | None = None  # a distilled model's own step count (None: the sampler's)
    sampler: str | None = None  # a distilled model's own sampler (None: the family's default)

    family: ClassVar[Family]

    def raw(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> Tensor:
        """The network's output for ``x`` ``(B, *sample_shape)`` at ``t`` (B,), in the model's
        own time units. diffkit's networks take class labels (or None) as the condition;
        an adapter for a foreign network overrides this method only."""
        return self.net(x, t, None if cond is None else cond.labels)

    def unconditional(self, cond: Cond) -> Cond:
        """The partner of ``cond`` that classifier-free guidance steers away from."""
        if self.conditioning == "class" and self.num_classes is not None:
            return null_class(cond, self.num_classes)
        raise ValueError(f"this {self.name} model is unconditional; it takes no condition")

    def initial(self, noise: Tensor) -> Tensor:
        """The state sampling starts from, given a batch of noise (the noise itself)."""
        return noise

    def max_steps(self) -> int:
        raise NotImplementedError

    def default_steps(self, sampler: str) -> int:
        """The steps a call to ``sampler`` takes when it names none: a distilled model's
        own, else the sampler's declared steps."""
        return self.steps or registry.declared_steps(sampler)


@dataclass(eq=False, kw_only=True)
class DDPMModel(Model):
    """A discrete-time diffusion model and its sampling conventions (each a default that a
    sampling call may override): ``clip`` clamps predicted x0 to [-1, 1] (pixels: yes;
    latents, whose range is not [-1, 1]: no), and ``threshold``, when set, replaces the
    clamp with dynamic thresholding (DeepFloyd IF); ``spacing`` picks the timesteps of a
    grid shorter than T, ``leading`` grids shifted by ``steps_offset``; ``variance`` is the
    ancestral sampler's: ``learned_range`` for a network whose output carries its own
    (:func:`~diffkit.param.split_variance`), None for a learned variance in a form
    diffkit does not read, so ancestral sampling needs an explicit fixed variance."""

    schedule: DDPMSchedule
    prediction: Prediction = "eps"
    clip: bool = True
    threshold: DynamicThreshold | None = None
    spacing: Spacing = "trailing"
    steps_offset: int = 0
    variance: Variance | None = "fixed_small"

    family: ClassVar[Family] = "ddpm"

    def max_steps(self) -> int:
        return self.schedule.num_steps

    def default_steps(self, sampler: str) -> int:
        """A distilled model's own steps; else T for a sampler that walks the whole grid,
        else the sampler's declared steps."""
        if self.steps:
            return self.steps
        spec = registry.specs().get(sampler)
        if spec is not None and spec.whole_grid:
            return self.max_steps()
        return registry.declared_steps(sampler)


MAX_FLOW_STEPS = 10_000


@dataclass(eq=False, kw_only=True)
class FlowModel(Model):
    """A rectified flow; ``steps`` is a distilled flow's own number of solver steps (1 for
    a one-step model), None for the solver's declared default."""

    time_scale: float = 1000.0  # the sinusoidal embedding sees the range a DDPM's would

    family: ClassVar[Family] = "flow"

    def max_steps(self) -> int:
        return MAX_FLOW_STEPS
