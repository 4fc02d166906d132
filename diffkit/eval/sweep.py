"""Quality and wall time against the number of sampling steps, per sampler."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from diffkit.eval.evaluate import Evaluator
from diffkit.runs.layout import atomic_write_bytes
from diffkit.runs.plots import save_grid


@dataclass
class SweepPoint:
    sampler: str
    steps: int
    n: int
    wall_seconds: float  # sampling only, not feature extraction
    ms_per_image: float
    metrics: dict[str, Any]
    grid: str  # file name of the grid in the sweep folder

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_steps(spec: str) -> list[int]:
    """``"steps=1,2,5"`` or ``"1,2,5"`` -> [1, 2, 5] (sorted, unique)."""
    body = spec.split("=", 1)[1] if "=" in spec else spec
    key = spec.split("=", 1)[0].strip() if "=" in spec else "steps"
    if key != "steps":
        raise ValueError(f"can only sweep steps, not {key!r} (use steps=1,2,5,...)")
    try:
        values = sorted({int(v) for v in body.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"--sweep {spec!r}: steps must be integers, e.g. steps=1,2,5") from None
    if not values or values[0] < 1:
        raise ValueError(f"--sweep {spec!r}: give at least one step count >= 1")
    return values


def run_sweep(
    sample: Callable[[str, int], torch.Tensor],
    evaluator: Evaluator,
    samplers: Sequence[str],
    steps: Sequence[int],
    out_dir: Path,
    *,
    grid_n: int = 64,
    on_point: Callable[[SweepPoint], None] = lambda p: None,
) -> list[SweepPoint]:
    """For each sampler and step count: draw images with ``sample(sampler, steps)`` (same
    seed each time), time it, score it, and save a grid into ``out_dir``."""
    points = []
    for sampler in samplers:
        for s in steps:
            start = time.perf_counter()
            images = sample(sampler, s)  # (N, C, H, W) in [-1, 1], on the CPU (synchronised)
            wall = time.perf_counter() - start
            grid = f"grid-{sampler}-{s:04d}.png"
            save_grid(images[:grid_n], out_dir / grid)
            metrics = evaluator.score_images(images)
            n = images.shape[0]
            point = SweepPoint(sampler, s, n, wall, 1000 * wall / n, metrics, grid)
            points.append(point)
            on_point(point)
    return points


def plot_sweep(points: Sequence[SweepPoint], floor_fid: float | None, path: Path) -> None:
    """FID vs steps and wall time vs steps, one line per sampler, log step axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fid, ax_time) = plt.subplots(1, 2, figsize=(11, 4))
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
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
