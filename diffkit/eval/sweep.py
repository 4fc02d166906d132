"""Quality and wall time against the number of sampling steps or the guidance scale."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from diffkit.eval.evaluate import Evaluator
from diffkit.runs.plots import new_figure, save_figure, save_grid


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


SweepKey = Literal["steps", "guidance"]


def parse_sweep(spec: str) -> tuple[SweepKey, list[float]]:
    """``"steps=1,2,5"`` (or ``"1,2,5"``) -> ("steps", [1, 2, 5]); ``"guidance=0,1,3"`` ->
    ("guidance", [0.0, 1.0, 3.0]). Values sorted and unique."""
    body = spec.split("=", 1)[1] if "=" in spec else spec
    key = spec.split("=", 1)[0].strip() if "=" in spec else "steps"
    if key not in ("steps", "guidance"):
        raise ValueError(f"can sweep steps or guidance, not {key!r} (e.g. steps=1,2,5)")
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
    sample: Callable[[str, int, float | None], tuple[torch.Tensor, torch.Tensor | None]],
    evaluator: Evaluator,
    samplers: Sequence[str],
    settings: Sequence[tuple[int, float | None]],
    out_dir: Path,
    *,
    grid_n: int = 64,
    on_point: Callable[[SweepPoint], None] = lambda p: None,
) -> list[SweepPoint]:
    """For each sampler and (steps, guidance) setting: draw images with
    ``sample(sampler, steps, guidance) -> (images, labels or None)`` (same seed each time),
    time it, score it (class accuracy too when labels come back), save a grid."""
    points = []
    for sampler in samplers:
        for steps, w in settings:
            start = time.perf_counter()
            images, labels = sample(sampler, steps, w)  # (N, C, H, W) in [-1, 1], on the CPU
            wall = time.perf_counter() - start
            grid = f"grid-{sampler}-{steps:04d}" + (f"-w{w:g}" if w is not None else "") + ".png"
            save_grid(images[:grid_n], out_dir / grid, nrow=10 if labels is not None else None)
            metrics = evaluator.score_images(images, labels)
            n = images.shape[0]
            point = SweepPoint(sampler, steps, n, wall, 1000 * wall / n, metrics, grid, w)
            points.append(point)
            on_point(point)
    return points


def plot_sweep(
    points: Sequence[SweepPoint], floor_fid: float | None, path: Path, key: str = "steps"
) -> None:
    """FID and wall time (``key`` = steps) or FID and class accuracy (``key`` = guidance)
    against the swept value, one line per sampler."""
    if key == "guidance":
        _plot_guidance(points, floor_fid, path)
        return
    fig, (ax_fid, ax_time) = new_figure(1, 2, figsize=(11, 4))
    for sampler in dict.fromkeys(p.sampler for p in points):
        pts = [p for p in points if p.sampler == sampler]
        xs = [p.steps for p in pts]
        ax_fid.plot(xs, [p.metrics["fid"] for p in pts], "o-", label=sampler)
        ax_time.plot(xs, [p.wall_seconds for p in pts], "o-", label=sampler)
    if floor_fid is not None:
        ax_fid.axhline(floor_fid, ls="--", c="gray", label="real data (floor)")
    ax_fid.set(xscale="log", yscale="log", xlabel="sampling steps", ylabel="FID",
               title="FID vs steps")  # fmt: skip
    n = points[0].n if points else 0
    ax_time.set(xscale="log", yscale="log", xlabel="sampling steps", ylabel="seconds",
                title=f"wall time for {n} images")  # fmt: skip
    for ax in (ax_fid, ax_time):
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    save_figure(fig, path)


def _plot_guidance(points: Sequence[SweepPoint], floor_fid: float | None, path: Path) -> None:
    fig, (ax_fid, ax_acc) = new_figure(1, 2, figsize=(11, 4))
    for sampler in dict.fromkeys(p.sampler for p in points):
        pts = [p for p in points if p.sampler == sampler]
        xs = [p.guidance for p in pts]
        label = f"{sampler}-{pts[0].steps}"
        ax_fid.plot(xs, [p.metrics["fid"] for p in pts], "o-", label=label)
        accs = [p.metrics.get("class_accuracy", {}).get("all", float("nan")) for p in pts]
        ax_acc.plot(xs, accs, "o-", label=label)
    if floor_fid is not None:
        ax_fid.axhline(floor_fid, ls="--", c="gray", label="real data (floor)")
    ax_fid.set(yscale="log", xlabel="guidance scale w", ylabel="FID", title="FID vs guidance")
    ax_acc.set(xlabel="guidance scale w", ylabel="accuracy",
               title="classifier accuracy on the requested class")  # fmt: skip
    for ax in (ax_fid, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path)
