"""Measure DeepCache on a trained model: wall-clock speedup, MAC ratio, distance to the
uncached samples and sample quality, per cache interval; and the plain sampler with as many
steps as DeepCache makes full network evaluations (DeepCache paper, Table 6)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffkit.accel.deepcache import CacheConfig, DeepCache
from diffkit.methods.pipeline import Pipeline

Track = Callable[[str, int | None], AbstractContextManager[Callable[[], None]]]
Score = Callable[[Tensor, Tensor | None], dict[str, Any]]


@dataclass
class BenchPoint:
    """One sampling configuration, measured on the same noise as every other point."""

    kind: str  # "uncached", "deepcache", or the sampler's name for a plain run (fewer steps)
    steps: int
    interval: int | None  # DeepCache's N (None for plain runs)
    nfe: float  # network calls per batch
    full_nfe: float  # calls that ran the whole network
    seconds: float  # wall clock for all n images
    macs: int  # multiply-accumulates of the network per image, whole trajectory
    mse: float  # mean squared difference to the uncached samples, images in [-1, 1]
    speedup: float = 1.0  # uncached seconds / seconds
    mac_ratio: float = 1.0  # uncached MACs / MACs
    metrics: dict[str, Any] | None = None  # FID, KID, ... (None: not scored)

    @property
    def label(self) -> str:
        return f"N={self.interval}" if self.kind == "deepcache" else f"{self.kind}-{self.steps}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"label": self.label}


def sampling_macs(
    pipe: Pipeline, sampler: str, steps: int, cache: CacheConfig | None,
    labels: Tensor | None, guidance: float,
) -> int:  # fmt: skip
    """Network multiply-accumulates to sample one image (latents not decoded), counted by
    ``torch.utils.flop_counter`` (convolutions, matmuls, attention) as FLOPs / 2."""
    from torch.utils.flop_counter import FlopCounterMode

    noise = torch.randn(1, *pipe.model.sample_shape, generator=torch.Generator().manual_seed(0))
    deep_cache = DeepCache.of(pipe, cache, sampler, steps) if cache is not None else None
    with FlopCounterMode(display=False) as counter, deep_cache or nullcontext():
        pipe.generate(noise, sampler, steps, labels=None if labels is None else labels[:1],
                      guidance=guidance)  # fmt: skip
    return counter.get_total_flops() // 2


def baseline_steps(pipe: Pipeline, sampler: str, full_nfe: float) -> int:
    """The most steps of ``sampler`` whose network calls do not exceed ``full_nfe``."""
    best = 1
    for s in range(1, pipe.max_steps() + 1):
        nfe = pipe.planned_nfe(sampler, s)
        if nfe is None or nfe > full_nfe:
            break
        best = s
    return best


def run_cache_bench(
    pipe: Pipeline,
    *,
    intervals: Sequence[int],
    cache: CacheConfig,
    sampler: str,
    steps: int,
    n: int,
    seed: int = 0,
    batch_size: int = 256,
    labels: Tensor | None = None,
    guidance: float = 1.0,
    baseline: bool = True,
    score: Score | None = None,
    track: Track | None = None,
    on_point: Callable[[BenchPoint, Tensor], None] | None = None,
) -> list[BenchPoint]:
    """Sample ``n`` images uncached, then with ``cache`` at every interval in ``intervals``
    (other fields of ``cache`` as given), then (``baseline``) plainly with as many steps as
    each cached run made full evaluations; all from the same ``seed``. ``score(images,
    labels)`` adds quality metrics; ``on_point(point, images)`` sees each point as soon as
    it is measured."""
    if pipe.planned_nfe(sampler, steps) is None:
        raise ValueError(f"{sampler} is adaptive; cache-bench needs a fixed-step sampler")
    configs = [replace(cache, interval=k) for k in sorted(set(intervals)) if k > 1]
    for c in configs:
        DeepCache.of(pipe, c, sampler, steps)  # raises now, before any sampling, if it cannot
    _warm_up(pipe, sampler, labels, guidance, min(n, batch_size, 16))

    def measure(kind: str, s: int, c: CacheConfig | None) -> tuple[BenchPoint, Tensor]:
        tag = f"N={c.interval}" if c else f"{sampler}-{s}"
        deep_cache = DeepCache.of(pipe, c, sampler, s) if c is not None else None
        with (track(tag, s * -(-n // batch_size)) if track else nullcontext(None) as advance,
              deep_cache or nullcontext()):  # fmt: skip
            start = time.perf_counter()
            reset = deep_cache.reset if deep_cache is not None else None
            result = pipe.sample(n, sampler=sampler, steps=s, seed=seed, batch_size=batch_size,
                                 labels=labels, guidance=guidance, on_step=advance,
                                 on_batch_start=reset)  # fmt: skip
            if pipe.device.type == "cuda":
                torch.cuda.synchronize(pipe.device)
            seconds = time.perf_counter() - start
        full = deep_cache.mean_full if deep_cache is not None else result.nfe
        macs = sampling_macs(pipe, sampler, s, c, labels, guidance)
        point = BenchPoint(kind, s, c.interval if c else None, result.nfe, full,
                           seconds, macs, mse=0.0)  # fmt: skip
        return point, result.images

    points: list[BenchPoint] = []
    ref_images: list[Tensor] = []

    def add(kind: str, s: int, c: CacheConfig | None) -> None:
        point, images = measure(kind, s, c)
        ref_images[:] = ref_images or [images]
        ref = points[0] if points else point
        points.append(_finish(point, ref, images, ref_images[0], labels, score, on_point))

    add("uncached", steps, None)
    for c in configs:
        add("deepcache", steps, c)
    if baseline:  # the plain sampler at each cached run's number of full calls
        plain = dict.fromkeys(baseline_steps(pipe, sampler, p.full_nfe) for p in points[1:])
        for s in plain:
            if s != steps:
                add(sampler, s, None)
    return points


def _finish(point, ref, images, ref_images, labels, score, on_point) -> BenchPoint:
    point.mse = float(((images - ref_images) ** 2).mean())
    point.speedup = ref.seconds / point.seconds
    point.mac_ratio = ref.macs / point.macs
    if score is not None:
        point.metrics = score(images, labels)
    if on_point is not None:
        on_point(point, images)
    return point


def _warm_up(pipe: Pipeline, sampler: str, labels, guidance: float, k: int) -> None:
    """One small untimed batch, so allocator and kernel start-up costs land on no point."""
    y = None if labels is None else labels[:k]
    pipe.sample(k, sampler=sampler, steps=2, labels=y, guidance=guidance)


def plot_cache_bench(
    points: Sequence[BenchPoint],
    sampler: str,
    path: Path,
    *,
    run: str | None = None,
    n: int | None = None,
    features: str | None = None,
) -> None:
    """Write :func:`cache_bench_figure` as a PNG."""
    from diffkit.runs.plots import save_figure

    save_figure(cache_bench_figure(points, sampler, run=run, n=n, features=features), path)


def cache_bench_figure(
    points: Sequence[BenchPoint],
    sampler: str,
    *,
    run: str | None = None,
    n: int | None = None,
    features: str | None = None,
) -> Any:
    """Speedup against FID (or, unscored, against MSE to the uncached samples): DeepCache
    per interval next to the plain sampler at the same number of full evaluations, each
    point named where its label overlaps no other (a bare Figure, not yet saved)."""
    from diffkit.runs.plots import new_figure, place_labels

    scored = all(p.metrics is not None for p in points)
    ylabel = "FID" if scored else "MSE to uncached samples"

    def y(p: BenchPoint) -> float:
        return p.metrics["fid"] if p.metrics is not None and scored else max(p.mse, 1e-12)

    fig, ax = new_figure(figsize=(6.5, 4.8))
    cached = [p for p in points if p.kind in ("uncached", "deepcache")]
    plain = [p for p in points if p.kind not in ("uncached", "deepcache")]
    ref = points[0]
    if plain:
        plain = sorted([ref, *plain], key=lambda p: p.speedup)
    color = {}
    for series, style, name in ((cached, "o-", "DeepCache"), (plain, "s--", "fewer steps")):
        if series:
            (line,) = ax.plot([p.speedup for p in series], [y(p) for p in series], style,
                              label=name)  # fmt: skip
            color |= {id(p): line.get_color() for p in series if id(p) not in color}
    ax.set(xlabel="wall-clock speedup vs uncached", ylabel=ylabel,
           title=_bench_title(sampler, ref.steps, run, n, features))  # fmt: skip
    if not scored:
        ax.set_yscale("log")
    ax.margins(0.15)  # room for labels beside the outermost points
    ax.grid(alpha=0.3)
    legend = ax.legend(loc="upper left")  # fixed: "best" would not see the labels
    fig.tight_layout()  # the final layout first: labels are placed in pixels
    named = cached + [p for p in plain if p is not ref]  # the reference once, though in both
    place_labels(ax, [(p.speedup, y(p)) for p in named], [p.label for p in named],
                 colors=[color[id(p)] for p in named], avoid=[legend])  # fmt: skip
    return fig


def _bench_title(
    sampler: str, steps: int, run: str | None, n: int | None, features: str | None
) -> str:
    about = [f"n = {n}"] if n else []
    about += [f"features {features}"] if features else []
    head = f"DeepCache on {sampler}-{steps}" + (f", {run}" if run else "")
    return head + (f"\n{', '.join(about)}" if about else "")
