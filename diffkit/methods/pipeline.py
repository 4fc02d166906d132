"""A trained generative model ready to sample: the part DDPMs and rectified flows share.

:class:`Pipeline` turns a request (n images, a condition, guidance, seed, sampler, steps)
into batches of initial noise, wraps the model for classifier-free guidance, hands each
batch to its family's integrator and decodes latents. It sees the network only through the
model contract (:class:`~diffkit.models.contract.Model`), so a diffkit run and a foreign
model sample the same way; :func:`diffkit.methods.load.load_pipeline` rebuilds any run from
its checkpoint alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from diffkit.config.run import GenerativeRunConfig, SamplerName
from diffkit.models.conditioning import Cond
from diffkit.models.contract import Model
from diffkit.nn.compile import CompiledNet
from diffkit.runs.checkpoint import (
    MISMATCH,
    TensorSpec,
    check_specs,
    check_state,
    load_state,
    module_specs,
    tensor_spec,
)
from diffkit.samplers import registry
from diffkit.samplers.guidance import autoguided, guided
from diffkit.samplers.registry import sampler_spec
from diffkit.schedules.forward import ForwardProcess

Net = Callable[..., Tensor]
Steer = Callable[[int, Tensor], Tensor | None]
"""``callback(i, x)`` after step i, x at grid point i + 1; a returned Tensor replaces x."""


@dataclass(frozen=True)
class SampleOptions:
    """How to integrate, beyond the sampler's name and step count. Which fields a sampler
    reads is in its :class:`~diffkit.samplers.registry.SamplerSpec`; ``spacing`` and ``clip``
    are read by every sampler of a DDPM."""

    eta: float = 0.0  # DDIM noise
    spacing: str | None = None  # DDPM timestep spacing (None: the model's, see DDPMModel)
    variance: str | None = None  # DDPM reverse variance (None: the model's)
    rtol: float = 1e-3  # dopri5
    atol: float = 1e-3  # dopri5
    clip: bool | None = None  # DDPMs: clamp x0 to [-1, 1] (None: the model's)


@dataclass(frozen=True)
class SampleBatch:
    """One batch of a sampling request."""

    images: Tensor  # (B, C, H, W) float32 in [-1, 1], on the CPU
    labels: Tensor | None  # (B,) the classes drawn, or None
    nfe: int  # network evaluations this batch took (every call, guided pairs counted once)
    seconds: float  # wall time of this batch, decoding included


@dataclass(frozen=True)
class SampleResult:
    """A whole request: all images, what they cost."""

    images: Tensor  # (n, C, H, W) float32 in [-1, 1], on the CPU
    labels: Tensor | None  # (n,) or None
    nfe: float  # network evaluations per batch, averaged over batches
    seconds: float  # wall time of all batches

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / self.images.shape[0]


class _FamilySamplers:
    """``Pipeline.SAMPLERS``: the registered samplers that fit the pipeline's ``FAMILY``,
    read when asked, so a sampler registered after the class was defined is included."""

    def __get__(self, obj: object, owner: type[Pipeline]) -> tuple[str, ...]:
        return registry.names(owner.FAMILY) if owner.FAMILY else ()


class _FamilyDefault:
    """``Pipeline.DEFAULT_SAMPLER``: the sampler declared the default for ``FAMILY``; on a
    pipeline whose model has its own (a distilled student's), that one."""

    def __get__(self, obj: Pipeline | None, owner: type[Pipeline]) -> str:
        if obj is not None and obj.model.sampler:
            return obj.model.sampler
        return registry.default(owner.FAMILY) if owner.FAMILY else ""


@dataclass
class Pipeline:
    """A :class:`Model` on a device, plus the run's config for a model diffkit trained
    (None for a foreign model). Subclasses, one per model family, implement
    :meth:`integrate` and :meth:`planned_nfe`."""

    model: Model
    device: torch.device
    config: GenerativeRunConfig | None = None
    guide: Pipeline | None = None  # autoguidance's weaker model (:meth:`guided_by`)
    guidance_interval: tuple[float, float] | None = None  # (lo, hi] in sigma: :meth:`banded`

    FAMILY: ClassVar[str] = ""  # the model family, as the sampler registry names it
    TITLE: ClassVar[str] = ""  # the family in prose: "DDPM", "flow"
    SAMPLERS: ClassVar = _FamilySamplers()  # tuple[str, ...]
    DEFAULT_SAMPLER: ClassVar = _FamilyDefault()  # str
    MODEL_OPTIONS: ClassVar[frozenset[str]] = frozenset()  # read whatever the sampler

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    @property
    def net(self) -> nn.Module:
        return self.model.net

    def max_steps(self) -> int:
        return self.model.max_steps()

    def compiled(
        self, backend: str | None, on_fallback: Callable[[str], None] = lambda message: None
    ) -> Pipeline:
        """This pipeline with its network's forward through ``torch.compile`` (``backend``
        None: itself). Samplers and guidance stay eager Python; a compiler failure falls
        back to eager (see :class:`~diffkit.nn.compile.CompiledNet`)."""
        if backend is None:
            return self
        net = CompiledNet(self.model.net, backend, on_fallback)
        return replace(self, model=replace(self.model, net=net))  # type: ignore[arg-type]

    def check(self, sampler: str, steps: int | None) -> int:
        """The step count to use for ``sampler``; ValueError if either does not fit."""
        if sampler not in self.SAMPLERS:
            raise ValueError(f"this {self.model.name} model samples with "
                             f"{', '.join(self.SAMPLERS)}, not {sampler}")  # fmt: skip
        steps = self.model.default_steps(sampler) if steps is None else steps  # 0 is not "default"
        if not 1 <= steps <= self.max_steps():
            raise ValueError(f"steps must be between 1 and {self.max_steps()}")
        return steps

    def reads(self, sampler: str) -> frozenset[str]:
        """The :class:`SampleOptions` fields ``sampler`` reads on this model."""
        return sampler_spec(sampler).options | self.MODEL_OPTIONS

    def options(self, sampler: str, options: dict[str, Any]) -> SampleOptions:
        """``options`` as :class:`SampleOptions`: an unknown name is a TypeError, a value
        that neither ``sampler`` nor this model reads (other than its default) a
        ValueError, rather than silently ignored."""
        opts = SampleOptions(**options)
        read = self.reads(sampler)
        for f in fields(SampleOptions):
            if f.name not in read and getattr(opts, f.name) != f.default:
                raise ValueError(f"{sampler} on a {self.model.name} model does not use "
                                 f"{f.name}")  # fmt: skip
        return opts

    def planned_nfe(self, sampler: str, steps: int) -> int | None:
        """Network evaluations one batch will take (None: adaptive, dopri5)."""
        raise NotImplementedError

    def noised(self, images: Tensor, point: Tensor | float, noise: Tensor) -> Tensor:
        """q(x_t | x_0) of ``images`` (B, ...) with ``noise`` at one grid point of the
        family's (:meth:`grid`): a DDPM timestep or a flow time."""
        raise NotImplementedError

    def forward_process(self) -> ForwardProcess:
        """The forward process q(x_t | x_0) the model was trained with, drawn by
        ``edit noise --model`` (:mod:`diffkit.schedules.forward`)."""
        raise NotImplementedError

    def posterior_mean(self, net: Net, y: Tensor, sigma: float) -> Tensor:
        """The denoiser view (Tweedie's formula): E[x | y] for ``y = x + image_sigma(sigma)
        eps`` (B, ...), the family's x0 estimate at that noise level through ``net(x, t, _)``
        (:func:`~diffkit.objectives.denoise.image_sigma`: sigma in [0, 1] image units)."""
        raise NotImplementedError

    def resampler(self, steps: int) -> Callable[..., Tensor]:
        """RePaint's resampling (Lugmayr et al. 2022) over a ``steps``-step grid, as
        ``fn(net, noise, known, mask, *, jump, resample, generator, on_move)``
        (:func:`~diffkit.edit.repaint.repaint_sample`); ValueError for a family without a
        forward step to walk back with, or steps that do not fit."""
        raise NotImplementedError

    def one_step_x0(self, xt: Tensor, point: float, net: Net) -> Tensor:
        """The estimate of x_0 from ``xt`` (B, ...) at one grid point in one call of
        ``net(x, t, _)`` (the model, guided as wanted), on the pipeline's device."""
        raise NotImplementedError

    def integrate(
        self,
        net: Net,
        x: Tensor,
        sampler: str,
        steps: int,
        opts: SampleOptions,
        generator: torch.Generator,
        on_step: Callable[[], None] | None,
        start: int = 0,
        callback: Steer | None = None,
    ) -> tuple[Tensor, int]:
        """Noise (B, ...) -> samples (B, ...) in the model's space; also the number of
        network evaluations spent. ``net(x, t, _)`` is the model, guided as requested;
        ``start`` and ``callback`` steer (see :meth:`generate`)."""
        raise NotImplementedError

    # Export to diffusers (:mod:`diffkit.external.export`), for a run diffkit trained

    DIFFUSERS_TAG: ClassVar[str] = ""  # the family's tag on the model card

    def diffusers_scheduler(self, diffusers: Any) -> Any:
        """The ``scheduler/`` of an export: a diffusers scheduler of the family's
        conventions (``diffusers`` is the module, imported by the caller)."""
        raise NotImplementedError

    def card_usage(self) -> tuple[str, list[str]]:
        """The model card's usage: the step argument of its ``pipe(...)`` call ("" for the
        model's default) and lines to run after loading (e.g. another scheduler)."""
        raise NotImplementedError

    def card_rows(self) -> list[tuple[str, str]]:
        """The family's rows of the model card's Model table."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, *, progress: bool | None = None, **kwargs: Any) -> SampleResult:
        """Draw ``n`` images, all in memory; :meth:`sample_batches` takes the same
        arguments and yields them batch by batch. ``progress``: a bar on stderr (default:
        when it is a terminal and no ``on_step`` is given)."""
        from diffkit.progress import step_bar, wanted

        sampler = kwargs.get("sampler") or self.DEFAULT_SAMPLER
        steps = self.check(sampler, kwargs.get("steps"))
        batch = kwargs.get("batch_size", 256)
        total = None if sampler_spec(sampler).adaptive else steps * -(-n // batch)
        show = wanted(progress) and kwargs.get("on_step") is None
        with step_bar(f"{sampler}-{steps}", total, show) as tick:
            if tick is not None:
                kwargs["on_step"] = tick
            batches = list(self.sample_batches(n, **kwargs))
        labels = [b.labels for b in batches]
        return SampleResult(
            images=torch.cat([b.images for b in batches]),
            labels=None if labels[0] is None else torch.cat(labels),  # type: ignore[arg-type]
            nfe=sum(b.nfe for b in batches) / len(batches),
            seconds=sum(b.seconds for b in batches),
        )

    @torch.no_grad()
    def sample_batches(
        self,
        n: int,
        *,
        sampler: SamplerName | None = None,
        steps: int | None = None,
        seed: int = 0,
        batch_size: int = 256,
        labels: Tensor | None = None,
        cond: Cond | None = None,
        guidance: float = 1.0,
        on_batch: Callable[[int, int], None] | None = None,
        on_batch_start: Callable[[], None] | None = None,
        on_step: Callable[[], None] | None = None,
        **options: Any,
    ) -> Iterator[SampleBatch]:
        """Yield :class:`SampleBatch` es of ``n`` images in all. Only one batch is in memory
        at a time, so ``n`` is bounded by disk, not RAM.

        The initial noise comes from a CPU generator seeded with ``seed`` and is drawn
        image by image, so the same seed gives the same starting noise on any device and
        at any ``batch_size`` (and so the same images with a deterministic sampler;
        ancestral samplers draw their per-step noise batch by batch). ``labels`` (n,)
        picks the classes of a class-conditional model, ``cond`` (n rows) is any other
        condition (None: unconditional), and ``guidance`` is the classifier-free guidance
        scale w (1 = plain conditional). ``options`` are the fields of
        :class:`SampleOptions` (see :meth:`options`). ``on_batch_start()`` runs before each
        batch (a stateful wrapper such as DeepCache resets there), ``on_step()`` after
        every step of every batch (every evaluation for dopri5), ``on_batch(done, n)``
        after each batch.
        """
        sampler = sampler or self.DEFAULT_SAMPLER
        steps = self.check(sampler, steps)
        opts = self.options(sampler, options)
        cond = self._condition(labels, cond, n)
        gen_cpu = torch.Generator().manual_seed(seed)
        gen = torch.Generator(self.device).manual_seed(seed + 1)
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            part = cond.select(slice(start, stop)) if cond is not None else None
            if on_batch_start:
                on_batch_start()
            began = time.perf_counter()
            noise = torch.cat(  # (B, *sample_shape), one draw per image
                [torch.randn(1, *self.model.sample_shape, generator=gen_cpu)
                 for _ in range(stop - start)]
            )  # fmt: skip
            x, nfe = self.generate(self.model.initial(noise), sampler, steps, cond=part,
                                   guidance=guidance, opts=opts, generator=gen,
                                   on_step=on_step)  # fmt: skip
            images = self._finish(x)
            y = part.labels.cpu() if part is not None and part.labels is not None else None
            yield SampleBatch(images, y, nfe, time.perf_counter() - began)
            if on_batch:
                on_batch(stop, n)

    def _finish(self, x: Tensor) -> Tensor:
        """A batch in the model's space -> float32 images on the CPU."""
        if self.model.codec is not None:
            x = self.model.codec.decode(x)
        return x.float().cpu()

    @torch.no_grad()
    def generate(
        self,
        noise: Tensor,
        sampler: str,
        steps: int,
        *,
        labels: Tensor | None = None,
        cond: Cond | None = None,
        guidance: float = 1.0,
        opts: SampleOptions | None = None,
        generator: torch.Generator | None = None,
        on_step: Callable[[], None] | None = None,
        start: int = 0,
        callback: Steer | None = None,
    ) -> tuple[Tensor, int]:
        """One batch: noise ``(B, *sample_shape)`` -> samples in the model's own space (latents
        are not decoded) on the model's device, and the network evaluations spent.

        Steering (image editing): with ``start = k`` the batch ``noise`` is the state at
        grid point k (:meth:`grid`), not pure noise, and only the rest of the grid is run;
        ``callback(i, x)`` after step i sees the state at grid point i + 1 (clean data
        after the last step) and may return a tensor that replaces it."""
        gen = generator or torch.Generator(self.device).manual_seed(0)
        x = noise.to(self.device)
        if labels is not None:
            cond = self._condition(labels, cond, noise.shape[0])
        net = self.network(cond, guidance)
        opts = opts or SampleOptions()
        return self.integrate(net, x, sampler, steps, opts, gen, on_step, start, callback)

    def network(self, cond: Cond | None = None, guidance: float = 1.0) -> Net:
        """The model as samplers see it, ``net(x, t, _)``: guided towards ``cond`` with
        scale ``guidance`` against the model's unconditional partner, or unconditional
        (None); with a :attr:`guide`, autoguided by it with scale ``guidance`` instead,
        under the same condition (conditional or not)."""
        cond = cond.to(self.device) if cond is not None else None
        band = self._band()
        if self.guide is not None:
            return autoguided(self.model.raw, self.guide.model.raw, cond, guidance, band)
        if cond is None:
            return self.model.raw
        return guided(self.model.raw, cond, self.model.unconditional(cond), guidance, band)

    def banded(self, lo: float, hi: float) -> Pipeline:
        """This pipeline guiding (classifier-free or autoguidance) only where the noise
        level sigma (:meth:`noise_level`) lies in ``(lo, hi]`` (Kynkäänniemi et al. 2024);
        elsewhere the model alone, at one evaluation per step."""
        if not 0 <= lo < hi:
            raise ValueError(f"a guidance interval needs 0 <= lo < hi, not ({lo}, {hi}]")
        return replace(self, guidance_interval=(float(lo), float(hi)))

    def _band(self):
        if self.guidance_interval is None:
            return None
        lo, hi = self.guidance_interval

        def inside(t: Tensor) -> Tensor:
            sigma = self.noise_level(t)
            return (sigma > lo) & (sigma <= hi)

        return inside

    def noise_level(self, t: Tensor) -> Tensor:
        """EDM's noise level sigma (x_t / a_t = x_0 + sigma eps) at the network's times
        ``t`` (B,), in the model's own time units."""
        raise NotImplementedError

    def guided_by(self, guide: Pipeline) -> Pipeline:
        """This pipeline autoguided by ``guide`` (:func:`~diffkit.samplers.guidance.
        autoguided`), which must be a model of the same family, sample shape, classes and
        conventions (:meth:`same_process`); ValueError saying how it differs."""
        if type(guide) is not type(self):
            raise ValueError(f"the guide is a {guide.TITLE}, this model a {self.TITLE}")
        mine, theirs = self.model, guide.model
        if tuple(mine.sample_shape) != tuple(theirs.sample_shape):
            raise ValueError(f"the guide draws {tuple(theirs.sample_shape)}, this model "
                             f"{tuple(mine.sample_shape)}")  # fmt: skip
        if (mine.conditioning, mine.num_classes) != (theirs.conditioning, theirs.num_classes):
            raise ValueError("the guide must take the same condition (classes) as the model")
        if getattr(mine.codec, "digest", None) != getattr(theirs.codec, "digest", None):
            raise ValueError("the guide must work on the same autoencoder's latents")
        differs = self.same_process(guide)
        if differs:
            raise ValueError(f"the guide {differs}")
        return replace(self, guide=guide)

    def same_process(self, other: Pipeline) -> str | None:
        """None if ``other`` (of this family) predicts in this model's parametrization and
        schedule, so their raw outputs mix (autoguidance); else how it differs."""
        raise NotImplementedError

    def _condition(self, labels: Tensor | None, cond: Cond | None, n: int) -> Cond | None:
        """``labels`` and/or ``cond`` as one checked :class:`Cond` of ``n`` rows (or None):
        labels join a condition that has none (e.g. ControlNet hints)."""
        if labels is not None and cond is not None and cond.labels is not None:
            raise ValueError("give class labels once: as labels or in the condition")
        if labels is not None:
            checked = self._check_labels(labels, n)
            cond = Cond(labels=checked) if cond is None else replace(cond, labels=checked)
        if cond is None:
            return None
        if cond.batch_size != n:
            raise ValueError(f"need a condition for each of the {n} images, got "
                             f"{cond.batch_size}")  # fmt: skip
        return cond

    def _check_labels(self, labels: Tensor, n: int) -> Tensor:
        k = self.num_classes
        if k is None or self.model.conditioning != "class":
            raise ValueError("this model is unconditional; it takes no class labels")
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        if labels.shape != (n,):
            raise ValueError(f"need {n} labels, got {labels.shape[0]}")
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"class labels must lie in 0..{k - 1}")
        return labels


def step_callback(on_step: Callable[[], None] | None,
                  callback: Steer | None) -> Callable[..., Tensor | None] | None:  # fmt: skip
    """A sampler's per-step callback from a progress tick and a steering ``callback(i, x)``
    (None when there is neither); extra arguments a sampler passes (a DDPM sampler's x0)
    are ignored."""
    if on_step is None and callback is None:
        return None

    def step(i: int, x: Tensor, *_: Tensor) -> Tensor | None:
        if on_step is not None:
            on_step()
        return callback(i, x) if callback is not None else None

    return step


def cycle_labels(num_classes: int | None, n: int) -> Tensor | None:
    """0, 1, ..., K-1, 0, 1, ... (n,): every class equally often (up to one); None for an
    unconditional model (``num_classes`` None)."""
    return torch.arange(n) % num_classes if num_classes else None


# diffkit 0.1.0 named the UNet's middle blocks mid1 / mid_attn / mid2.
_LEGACY_KEYS = (("mid1.", "mid.res1."), ("mid_attn.", "mid.attn."), ("mid2.", "mid.res2."))


def _current_name(key: str) -> str:
    for old, new in _LEGACY_KEYS:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def check_weights(
    net: nn.Module, specs: dict[str, TensorSpec], source: object, prefix: str = ""
) -> None:
    """Before loading: the tensors a header lists (old names mapped) must be exactly those
    of ``net``, best built on the meta device, and fit in memory with it."""
    check_state(net, {_current_name(k): v for k, v in specs.items()}, source, prefix)


def load_weights(net: nn.Module, weights: dict[str, Tensor], source: Path) -> None:
    """Strict ``load_state_dict``; missing, extra or mis-shaped tensors -> CheckpointError
    naming the first."""
    renamed = {_current_name(k): v for k, v in weights.items()}
    found = {k: tensor_spec(v) for k, v in renamed.items()}
    check_specs(module_specs(net), found, f"{source}: {MISMATCH}")
    load_state(net, renamed, source)
