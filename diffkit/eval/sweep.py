"""Quality and wall time against the number of sampling steps or the guidance scale."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from diffkit.runs.plots import new_figure, save_class_grid, save_figure, save_grid, ticks_at


@dataclass
class SweepPoint:
    sampler: str
    steps: int
    n: int
    wall_seconds: float  # sampling only, not feature extraction
    ms_per_image: float
    metrics: dict[str, Any]
    grid: str  # file name of the grid in the sweep folder
    guidance: float | None = None  # classifier-free guidance scale (conditional models)
    control_scale: float | None = None  # ControlNet residual scale (ControlNet runs)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


SweepKey = Literal["steps", "guidance", "control_scale"]
SWEEP_KEYS = ("steps", "guidance", "control_scale")


@dataclass(frozen=True)
class Setting:
    """One point of a sweep: the step count, and the guidance or control scale if set."""

    steps: int
    guidance: float | None = None
    control_scale: float | None = None

    def tag(self) -> str:
        w = f"-w{self.guidance:g}" if self.guidance is not None else ""
        return f"{self.steps:04d}{w}" + (
            f"-cs{self.control_scale:g}" if self.control_scale is not None else ""
        )


def parse_sweep(spec: str) -> tuple[SweepKey, list[float]]:
    """``"steps=1,2,5"`` (or ``"1,2,5"``) -> ("steps", [1, 2, 5]); ``"guidance=0,1,3"`` ->
    ("guidance", [0.0, 1.0, 3.0]); ``control_scale=0,1,2`` likewise. Values sorted and
    unique."""
    body = spec.split("=", 1)[1] if "=" in spec else spec
    key = spec.split("=", 1)[0].strip() if "=" in spec else "steps"
    if key not in SWEEP_KEYS:
        raise ValueError(
            f"can sweep steps, guidance or control_scale, not {key!r} (e.g. steps=1,2,5)"
        )
    kind = int if key == "steps" else float
    try:
        values = sorted({kind(v) for v in body.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"--sweep {spec!r}: {key} must be numbers, e.g. {key}=1,2,5") from None
    low = 1 if key == "steps" else 0
    if not values or values[0] < low:
        raise ValueError(f"--sweep {spec!r}: give at least one value, all >= {low}")
    return key, values  # type: ignore[return-value]


def run_sweep(
    sample: Callable[[str, Setting], tuple[torch.Tensor, torch.Tensor | None]],
    score: Callable[[torch.Tensor, torch.Tensor | None], dict[str, Any]],
    samplers: Sequence[str],
    settings: Sequence[Setting],
    out_dir: Path,
    *,
    grid_n: int = 64,
    class_names: Sequence[str] = (),
    on_point: Callable[[SweepPoint], None] = lambda p: None,
) -> list[SweepPoint]:
    """For each sampler and setting: draw images with ``sample(sampler, setting) ->
    (images, labels or None)`` (same seed each time), time it, ``score`` it (e.g.
    :meth:`Evaluator.score_images`, class accuracy too when labels come back), save a
    grid (with labels: one column per class, headed by ``class_names``)."""
    points = []
    for sampler in samplers:
        for s in settings:
            start = time.perf_counter()
            images, labels = sample(sampler, s)  # (N, C, H, W) in [-1, 1], on the CPU
            wall = time.perf_counter() - start
            grid = f"grid-{sampler}-{s.tag()}.png"
            if labels is not None:
                save_class_grid(images[:grid_n], labels[:grid_n], out_dir / grid, class_names)
            else:
                save_grid(images[:grid_n], out_dir / grid)
            metrics = score(images, labels)
            n = images.shape[0]
            point = SweepPoint(sampler, s.steps, n, wall, 1000 * wall / n, metrics, grid,
                               s.guidance, s.control_scale)  # fmt: skip
            points.append(point)
            on_point(point)
    return points


def plot_sweep(
    points: Sequence[SweepPoint],
    floor_fid: float | None,
    path: Path,
    key: str = "steps",
    *,
    run: str | None = None,
    features: str | None = None,
    feature_sha256: str | None = None,
) -> None:
    """Write :func:`sweep_figure` as a PNG."""
    fig = sweep_figure(points, floor_fid, key, run=run, features=features,
                       feature_sha256=feature_sha256)  # fmt: skip
    save_figure(fig, path)


def sweep_figure(
    points: Sequence[SweepPoint],
    floor_fid: float | None,
    key: str = "steps",
    *,
    run: str | None = None,
    features: str | None = None,
    feature_sha256: str | None = None,
) -> Any:
    """FID and wall time (``key`` = steps), FID and class accuracy (guidance) or FID and
    edge F1 (control_scale) against the swept value, one line per sampler; x ticks at
    exactly the swept values (a log axis when they span a decade), titled with the run,
    n, the feature network and the samplers. A bare matplotlib Figure, not yet saved."""
    fig, (ax_fid, ax_other) = new_figure(1, 2, figsize=(11, 4.6))
    draw = {"steps": _draw_steps, "guidance": _draw_guidance, "control_scale": _draw_control}
    xs = draw[key](points, ax_fid, ax_other)
    if floor_fid is not None:
        ax_fid.axhline(floor_fid, ls="--", c="gray", label="real data (floor)")
    for ax in (ax_fid, ax_other):
        ticks_at(ax, xs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(sweep_title(points, key, run, features, feature_sha256), fontsize=10)
    return fig


def sweep_title(
    points: Sequence[SweepPoint],
    key: str,
    run: str | None,
    features: str | None,
    feature_sha256: str | None,
) -> str:
    """Two lines: what was swept on which run; n, the feature network (name and the
    first 12 hex digits of its sha256) and the samplers (with the steps, when fixed)."""
    samplers = ", ".join(dict.fromkeys(p.sampler for p in points))
    steps = sorted({p.steps for p in points})
    at = f" at {steps[0]} steps" if key != "steps" and len(steps) == 1 else ""
    net = (features or "unnamed") + (f" (sha256 {feature_sha256[:12]})" if feature_sha256 else "")
    n = points[0].n if points else 0
    head = f"{key.replace('_', ' ')} sweep" + (f" of {run}" if run else "")
    return f"{head}\nn = {n} images per point, feature net {net}, sampler {samplers}{at}"


def _by_sampler(points: Sequence[SweepPoint]) -> list[list[SweepPoint]]:
    """The points of each sampler, samplers in the order they were swept."""
    return [[p for p in points if p.sampler == s] for s in dict.fromkeys(p.sampler for p in points)]


def _draw_steps(points: Sequence[SweepPoint], ax_fid: Any, ax_time: Any) -> list[float]:
    for pts in _by_sampler(points):
        xs = [p.steps for p in pts]
        ax_fid.plot(xs, [p.metrics["fid"] for p in pts], "o-", label=pts[0].sampler)
        ax_time.plot(xs, [p.wall_seconds for p in pts], "o-", label=pts[0].sampler)
    n = points[0].n if points else 0
    ax_fid.set(yscale="log", xlabel="sampling steps", ylabel="FID", title="FID vs steps")
    ax_time.set(yscale="log", xlabel="sampling steps", ylabel="seconds",
                title=f"wall time for {n} images")  # fmt: skip
    return [p.steps for p in points]


def _draw_guidance(points: Sequence[SweepPoint], ax_fid: Any, ax_acc: Any) -> list[float]:
    for pts in _by_sampler(points):
        xs = [p.guidance for p in pts]
        label = f"{pts[0].sampler}-{pts[0].steps}"
        ax_fid.plot(xs, [p.metrics["fid"] for p in pts], "o-", label=label)
        accs = [p.metrics.get("class_accuracy", {}).get("all", float("nan")) for p in pts]
        ax_acc.plot(xs, accs, "o-", label=label)
    ax_fid.set(yscale="log", xlabel="guidance scale w", ylabel="FID", title="FID vs guidance")
    ax_acc.set(xlabel="guidance scale w", ylabel="accuracy",
               title="classifier accuracy on the requested class")  # fmt: skip
    return [p.guidance for p in points if p.guidance is not None]


def _draw_control(points: Sequence[SweepPoint], ax_fid: Any, ax_f1: Any) -> list[float]:
    """FID and edge F1 against the ControlNet scale (0: the base model)."""
    for pts in _by_sampler(points):
        xs = [p.control_scale for p in pts]
        label = f"{pts[0].sampler}-{pts[0].steps}"
        ax_fid.plot(xs, [p.metrics["fid"] for p in pts], "o-", label=label)
        for key, style, name in (("f1", "o-", "1 px"), ("f1_exact", "s--", "exact")):
            f1 = [p.metrics.get("edges", {}).get(key, float("nan")) for p in pts]
            ax_f1.plot(xs, f1, style, label=f"{label}, {name}")
    ax_fid.set(yscale="log", xlabel="control scale", ylabel="FID", title="FID vs control scale")
    ax_f1.set(xlabel="control scale", ylabel="edge F1", ylim=(0, 1),
              title="edge F1 of samples vs their hints")  # fmt: skip
    return [p.control_scale for p in points if p.control_scale is not None]
