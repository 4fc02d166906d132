"""A trained generative model ready to sample: the part DDPMs and rectified flows share.

:class:`Pipeline` turns a request (n images, labels, guidance, seed, sampler, steps) into
batches of initial noise, wraps the network for classifier-free guidance, hands each batch
to the method's integrator and decodes latents; :func:`diffkit.methods.load.load_pipeline`
rebuilds any run from its checkpoint alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from diffkit.accel.deepcache import CacheConfig, DeepCache
from diffkit.config.run import GenerativeRunConfig, SamplerName
from diffkit.runs.checkpoint import (
    MISMATCH,
    CheckpointError,
    TensorSpec,
    check_specs,
    check_state,
    module_specs,
    tensor_spec,
)
from diffkit.samplers.guidance import guided

if TYPE_CHECKING:
    from diffkit.methods.vae import LatentCodec

Net = Callable[..., Tensor]


@dataclass(frozen=True)
class SampleOptions:
    """How to integrate, beyond the sampler's name and step count."""

    eta: float = 0.0  # DDIM noise
    spacing: str = "trailing"  # DDPM timestep spacing
    variance: str = "fixed_small"  # DDPM reverse variance
    rtol: float = 1e-3  # dopri5
    atol: float = 1e-3  # dopri5
    clip: bool | None = None  # DDPMs: clamp x0 to [-1, 1] (None: on for pixels, off for latents)


@dataclass
class Pipeline:
    """Network (EMA weights by default) + method; for a latent model also the autoencoder
    that decodes its samples. Subclasses implement :meth:`integrate` and :meth:`max_steps`."""

    config: GenerativeRunConfig
    net: nn.Module
    device: torch.device
    codec: LatentCodec | None = None

    SAMPLERS: ClassVar[tuple[str, ...]] = ()
    DEFAULT_SAMPLER: ClassVar[str] = ""

    @property
    def num_classes(self) -> int | None:
        return self.config.num_classes

    def max_steps(self) -> int:
        raise NotImplementedError

    def default_steps(self, sampler: str) -> int:
        return 50

    def check(self, sampler: str, steps: int | None) -> int:
        """The step count to use for ``sampler``; ValueError if either does not fit."""
        if sampler not in self.SAMPLERS:
            raise ValueError(f"this {self.config.run_kind} model samples with "
                             f"{', '.join(self.SAMPLERS)}, not {sampler}")  # fmt: skip
        steps = self.default_steps(sampler) if steps is None else steps  # 0 is not "default"
        if not 1 <= steps <= self.max_steps():
            raise ValueError(f"steps must be between 1 and {self.max_steps()}")
        return steps

    def planned_nfe(self, sampler: str, steps: int) -> int | None:
        """Network evaluations one batch will take (None: adaptive, dopri5)."""
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
    ) -> tuple[Tensor, int]:
        """Noise (B, ...) -> samples (B, ...) in the model's space; also the number of
        network evaluations spent."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, **kwargs: Any) -> Tensor:
        """Draw ``n`` images, float32 (n, C, H, W) in [-1, 1] on the CPU, all in memory;
        :meth:`sample_batches` takes the same arguments and yields them batch by batch."""
        return torch.cat([images for images, _ in self.sample_batches(n, **kwargs)])

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
        guidance: float = 1.0,
        on_batch: Callable[[int, int], None] | None = None,
        on_step: Callable[[], None] | None = None,
        stats: dict[str, Any] | None = None,
        cache: CacheConfig | None = None,
        **options: Any,
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Yield ``(images, labels)`` batches of ``n`` images in all: float32 (B, C, H, W)
        in [-1, 1] on the CPU, and the batch's labels (B,) or None. Only one batch is in
        memory at a time, so ``n`` is bounded by disk, not RAM.

        The initial noise comes from a CPU generator seeded with ``seed`` and is drawn
        image by image, so the same seed gives the same starting noise on any device and
        at any ``batch_size`` (and so the same images with a deterministic sampler;
        ancestral samplers draw their per-step noise batch by batch). ``labels`` (n,)
        picks the classes of a class-conditional model (None: unconditional, the null
        class) and ``guidance`` is the classifier-free guidance scale w (1 = plain
        conditional). ``options`` are the fields of
        :class:`SampleOptions` (``eta``, ``spacing``, ``variance``, ``rtol``, ``atol``,
        ``clip``); an unknown one is a TypeError. ``on_step()`` is called after every step
        of every batch (every evaluation for dopri5); ``stats`` receives, once all batches
        are done, ``nfe``, the network evaluations per batch, and ``full_nfe``, those that
        ran the whole network. ``cache`` turns on DeepCache (:mod:`diffkit.accel.deepcache`;
        a UNet only, ValueError otherwise), restarted for every batch.
        """
        sampler = sampler or self.DEFAULT_SAMPLER
        steps = self.check(sampler, steps)
        opts = SampleOptions(**options)
        labels = self._check_labels(labels, n)
        gen_cpu = torch.Generator().manual_seed(seed)
        gen = torch.Generator(self.device).manual_seed(seed + 1)
        deep_cache = self.deep_cache(cache, sampler, steps)
        nfes, full = [], []
        with deep_cache or nullcontext():
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                y = labels[start:stop] if labels is not None else None
                if deep_cache is not None:
                    deep_cache.reset()
                shape = self.config.sample_shape
                noise = torch.cat(  # (B, *sample_shape), one draw per image
                    [torch.randn(1, *shape, generator=gen_cpu) for _ in range(stop - start)]
                )
                x, nfe = self.generate(noise, sampler, steps, labels=y, guidance=guidance,
                                       opts=opts, generator=gen, on_step=on_step)  # fmt: skip
                nfes.append(nfe)
                full.append(deep_cache.full if deep_cache is not None else nfe)
                yield self._finish(x), y
                if on_batch:
                    on_batch(stop, n)
        if stats is not None:
            stats["nfe"] = sum(nfes) / len(nfes)
            stats["full_nfe"] = sum(full) / len(full)

    def deep_cache(self, cache: CacheConfig | None, sampler: str, steps: int) -> DeepCache | None:
        """A :class:`DeepCache` on this network for ``cache`` (None: no caching)."""
        if cache is None:
            return None
        return DeepCache(self.net, cache, self.planned_nfe(sampler, steps))

    def _finish(self, x: Tensor) -> Tensor:
        """A batch in the model's space -> float32 images on the CPU."""
        if self.codec is not None:
            x = self.codec.decode(x)
        return x.float().cpu()

    @torch.no_grad()
    def generate(
        self,
        noise: Tensor,
        sampler: str,
        steps: int,
        *,
        labels: Tensor | None = None,
        guidance: float = 1.0,
        opts: SampleOptions | None = None,
        generator: torch.Generator | None = None,
        on_step: Callable[[], None] | None = None,
    ) -> tuple[Tensor, int]:
        """One batch: noise (B, *sample_shape) -> samples in the model's own space (latents
        are not decoded) on the model's device, and the network evaluations spent."""
        gen = generator or torch.Generator(self.device).manual_seed(0)
        x = noise.to(self.device)
        net = self.network(labels, guidance)
        return self.integrate(net, x, sampler, steps, opts or SampleOptions(), gen, on_step)

    def network(self, labels: Tensor | None = None, guidance: float = 1.0) -> Net:
        """The network as samplers see it: guided towards ``labels`` (B,) with scale
        ``guidance``, or unconditional (None)."""
        if labels is None:
            return self.net
        return guided(self.net, labels, self.num_classes, guidance)  # type: ignore[arg-type]

    def _check_labels(self, labels: Tensor | None, n: int) -> Tensor | None:
        if labels is None:
            return None
        k = self.num_classes
        if k is None:
            raise ValueError("this model is unconditional; it takes no class labels")
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        if labels.shape != (n,):
            raise ValueError(f"need {n} labels, got {labels.shape[0]}")
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"class labels must lie in 0..{k - 1}")
        return labels


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
    try:
        net.load_state_dict(renamed)
    except RuntimeError:
        raise CheckpointError(f"{source}: {MISMATCH}") from None
