"""DeepCache (Ma, Fang & Wang 2023, arXiv 2312.00858): reuse a UNet's deep features across
sampling steps.

A UNet's high-level features change little from one denoising step to the next, while the
shallow layers carry the step-specific detail. Pick skip connection ``b`` (1 = the
outermost, the one from ``conv_in`` to the last up stage). The *shallow branch* is what
that skip and the ones outside it need: ``conv_in``, the first ``b - 1`` down modules, the
last ``b`` up stages and the output head. Everything else (the deeper down modules, the
middle block and the up modules before the first kept stage) is the *deep branch*; its
output is the feature that enters the first kept up stage. A diffusers ``UNet2DModel``
caches the same way at the granularity of its blocks: branch b keeps its first b down
blocks and last b up blocks.

On a *full* call the whole UNet runs and every deep module's output is recorded. On a
*cached* call only the shallow branch computes; each deep module returns its recorded
output, so the first kept up stage sees the cached deep feature next to a fresh skip
(paper Eq. 5 and Fig. 4). Which calls are full is the schedule: every ``interval``-th call
(paper Sec. 3.3, "uniform 1:N") or ``quadratic``, spaced as ``c + sign(u) u^2`` for
evenly spaced u, dense near a chosen point c of the trajectory and sparse away from it
(the paper's non-uniform 1:N with power 2). ``features="linear"`` (the default) replaces
the paper's reuse of the last feature by the straight line through the last two recorded
features, evaluated at the current call (an extrapolation: the next full call is still in
the future); ``"reuse"`` is the paper's method.

The cache attaches from the outside for the length of a ``with`` block, without touching
the network's code or parameters: a forward pre-hook on the UNet counts calls and decides
full or cached, and during the block each deep module's ``forward`` is shadowed by an
instance attribute that runs the original and records its output on full calls, and
returns the recording on cached calls (a forward hook cannot skip a module). On exit the
hooks and attributes are removed.
The schedule counts network *calls*, so a solver with several evaluations per step
(Heun, RK4) or a CFG wrapper (one batched call for both halves) is handled the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import Tensor, nn

from diffkit.nn.layers import Upsample
from diffkit.nn.unet import UNet

CacheSchedule = Literal["uniform", "quadratic"]
CacheFeatures = Literal["reuse", "linear"]


@dataclass(frozen=True)
class CacheConfig:
    """``interval`` N: one full call in N on average (1 = no caching). ``branch`` b: skip
    connections kept in the shallow branch (1 = shallowest, fastest). ``schedule``: which
    calls are full. ``center``: where the quadratic schedule is densest, as a fraction of
    the trajectory (0 = the first, noisiest step). ``features``: extrapolate linearly from
    the last two recorded deep features (the default: measured 1.3-11x lower MSE to the
    uncached samples than reuse at equal cost, docs/benchmarks.md 8.3), or reuse the last
    one (the paper)."""

    interval: int = 1
    branch: int = 1
    schedule: CacheSchedule = "uniform"
    center: float = 0.0
    features: CacheFeatures = "linear"

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError("cache interval must be at least 1")
        if self.branch < 1:
            raise ValueError("cache branch must be at least 1")
        if not 0.0 <= self.center <= 1.0:
            raise ValueError("cache center must lie in [0, 1]")
        if self.schedule not in ("uniform", "quadratic"):
            raise ValueError(f"unknown cache schedule {self.schedule!r}")
        if self.features not in ("reuse", "linear"):
            raise ValueError(f"unknown cache features {self.features!r}")


def full_calls(config: CacheConfig, total: int | None) -> Callable[[int], bool]:
    """``is_full(call)`` for calls 0, 1, ...: every ``interval``-th call, or the quadratic
    schedule over ``total`` calls (which it needs: None -> ValueError). Call 0 is full."""
    if config.schedule == "uniform" or config.interval == 1:
        return lambda i: i % config.interval == 0
    if total is None:
        raise ValueError("the quadratic cache schedule needs a fixed number of network "
                         "evaluations; an adaptive solver (dopri5) has none")  # fmt: skip
    chosen = set(quadratic_schedule(total, math.ceil(total / config.interval), config.center))
    return lambda i: i in chosen or i >= total


def quadratic_schedule(total: int, k: int, center: float) -> list[int]:
    """``k`` distinct full calls among ``0..total-1``, the first being 0, at
    ``c + sign(u) u^2`` for ``k + 1`` evenly spaced u from ``-sqrt(c)`` to
    ``sqrt(total - c)`` (the last point, ``total``, dropped) with ``c = center * total``:
    gaps grow linearly with the distance from c. Rounded down, then pushed apart where
    rounding made two equal."""
    k = max(1, min(k, total))
    c = center * total
    lo, hi = -math.sqrt(c), math.sqrt(total - c)
    us = [lo + (hi - lo) * j / k for j in range(k)]
    ideal = [c + math.copysign(u * u, u) for u in us]
    out: list[int] = []
    for j, p in enumerate(ideal):
        p = max(math.floor(p), out[-1] + 1 if out else 0)
        out.append(min(p, total - (k - j)))  # leave room for the calls still to place
    out[0] = 0
    return out


def branch_modules(unet: nn.Module, branch: int) -> tuple[list[nn.Module], nn.Module]:
    """The deep modules a cached call skips, in call order, and the one whose output is
    the cached feature (the module just before the first kept up stage): of a diffkit
    UNet, or of a diffusers ``UNet2DModel`` (recognised by its blocks; not imported)."""
    if isinstance(unet, UNet):
        return _diffkit_branch(unet, branch)
    if is_unet2d(unet):
        return _diffusers_branch(unet, branch)
    raise ValueError(f"DeepCache needs a UNet (diffkit's, or a diffusers UNet2DModel); this "
                     f"model is a {type(unet).__name__}")  # fmt: skip


def is_unet2d(net: nn.Module) -> bool:
    """A diffusers ``UNet2DModel``-like network: down blocks, a middle, up blocks."""
    return all(hasattr(net, a) for a in ("down_blocks", "mid_block", "up_blocks", "conv_in"))


def _diffkit_branch(unet: UNet, branch: int) -> tuple[list[nn.Module], nn.Module]:
    skips = len(unet.down) + 1
    if not 1 <= branch <= skips:
        raise ValueError(f"cache branch must be between 1 and {skips} for this UNet")
    stages = [i for i, m in enumerate(unet.up) if not isinstance(m, Upsample)]
    first_kept = stages[skips - branch]
    deep_up = list(unet.up)[:first_kept]
    deep = [*list(unet.down)[branch - 1 :], unet.mid, *deep_up]
    return deep, deep[-1]


def _diffusers_branch(unet: nn.Module, branch: int) -> tuple[list[nn.Module], nn.Module]:
    """A UNet2DModel's blocks each hold a level's resnets and its resampler, and up block
    ``-b`` consumes the skips of ``conv_in`` (b = 1) or down block ``-b - 1``: branch b
    keeps the first b down blocks and the last b up blocks (the kept down blocks still
    compute their downsamplers, whose skips a cached call does not use)."""
    down, up = list(unet.down_blocks), list(unet.up_blocks)
    if not 1 <= branch <= len(down):
        raise ValueError(f"cache branch must be between 1 and {len(down)} for this UNet")
    mid = [unet.mid_block] if unet.mid_block is not None else []
    deep = [*down[branch:], *mid, *up[: len(up) - branch]]
    if not deep:
        raise ValueError("this UNet has nothing deeper than its kept blocks to cache")
    return deep, deep[-1]


class DeepCache:
    """``with DeepCache(unet, config, total_calls) as cache: sample(...)``; on a pipeline,
    ``with DeepCache.of(pipe, config, sampler, steps) as cache:
    pipe.sample(..., on_batch_start=cache.reset)``.

    ``total_calls`` (network evaluations per sampling run) is needed by the quadratic
    schedule only. :meth:`reset` starts a new sampling run (a new batch). ``calls`` and
    ``full`` count this run's network calls and the full ones among them; ``finished``
    holds ``full`` of every earlier run.
    """

    def __init__(self, unet: nn.Module, config: CacheConfig, total_calls: int | None = None):
        self.unet, self.config = unet, config
        self.deep, self.feature = branch_modules(unet, config.branch)
        self.is_full = full_calls(config, total_calls)
        self._handles: list[Any] = []
        self.finished: list[int] = []
        self.calls = 0
        self.reset()

    @classmethod
    def of(cls, pipe: Any, config: CacheConfig, sampler: str, steps: int) -> DeepCache:
        """A cache on a pipeline's network, for runs of ``sampler`` with ``steps`` steps
        (the quadratic schedule needs their planned network evaluations)."""
        from diffkit.methods.controlnet import is_controlled

        if is_controlled(pipe.model):
            raise ValueError("DeepCache reuses the UNet's deep features across steps, but a "
                             "ControlNet adds fresh residuals to every skip at every step; "
                             "a cached step would drop the control")  # fmt: skip
        return cls(pipe.net, config, pipe.planned_nfe(sampler, steps))

    @property
    def mean_full(self) -> float:
        """Full calls per run, over the finished runs and the current one."""
        runs = self.finished + ([self.full] if self.calls else [])
        return sum(runs) / len(runs) if runs else 0.0

    def reset(self) -> None:
        """Forget everything recorded: the next call is call 0 (full)."""
        if self.calls:
            self.finished.append(self.full)
        self.calls = self.full = 0
        self._cached = False
        self._batch: int | None = None
        self._outputs: dict[int, Any] = {}
        self._history: list[tuple[int, Tensor]] = []  # (call, feature) of the last two full

    def __enter__(self) -> DeepCache:
        taken = [type(m).__name__ for m in self.deep if "forward" in vars(m)]
        if taken:  # checked before anything is attached, so a refusal leaves no trace
            raise RuntimeError(f"{taken[0]}.forward is already overridden")
        self._handles.append(self.unet.register_forward_pre_hook(self._before, with_kwargs=True))
        self._handles.append(self.unet.register_forward_hook(self._after))
        for i, module in enumerate(self.deep):
            module.forward = self._shortcut(i, module.forward)  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module in self.deep:
            vars(module).pop("forward", None)
        self.reset()

    def _before(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        batch = (args[0] if args else next(iter(kwargs.values()))).shape[0]
        self._cached = bool(self._outputs) and batch == self._batch and not self.is_full(self.calls)
        if not self._cached:
            self._batch = batch
            self.full += 1

    def _after(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        if not self._cached and self.config.features == "linear":
            self._history = [*self._history[-1:], (self.calls, self._outputs[len(self.deep) - 1])]
        self.calls += 1
        self._cached = False

    def _shortcut(self, i: int, original: Callable[..., Any]) -> Callable[..., Any]:
        last = i == len(self.deep) - 1

        def forward(*args: Any, **kwargs: Any) -> Any:
            if not self._cached:  # full call: run the module and record its output
                self._outputs[i] = original(*args, **kwargs)
                return self._outputs[i]
            if last and len(self._history) == 2:
                return self._extrapolate()
            return self._outputs[i]

        return forward

    def _extrapolate(self) -> Tensor:
        """The line through the last two recorded features, at the current call."""
        (a, fa), (b, fb) = self._history
        return fb + (fb - fa) * ((self.calls - b) / (b - a))
