"""``diffkit cache-bench RUN``: DeepCache's speed and quality, interval by interval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffkit.app.bench import BenchResult, CacheBenchRequest
from diffkit.app.bench import cache_bench as bench_cache
from diffkit.app.common import CacheRequest
from diffkit.cli import console
from diffkit.cli.choices import family_defaults, sampler_names
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.options import (
    CacheBranch,
    CacheCenter,
    CacheMode,
    CacheSchedule,
    ClassifierPath,
    DataDir,
    Device,
    FeatureNet,
    Guidance,
    NoEma,
    RunsDir,
    Seed,
    machine_settings,
)


def _intervals(spec: str) -> list[int]:
    try:
        values = sorted({int(v) for v in spec.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"--intervals {spec!r}: give whole numbers, e.g. 1,2,3,5,10") from None
    if not values or values[0] < 1:
        raise UsageError("--intervals: every interval must be at least 1")
    return values


def _row(p) -> list[str]:
    m = p.metrics or {}
    fid = f"{m['fid']:.3f}" if "fid" in m else "-"
    kid = f"{m['kid']:.4g}" if "kid" in m else "-"
    return [p.label, str(p.steps), f"{p.full_nfe:g}/{p.nfe:g}", f"{p.seconds:.2f}",
            f"{p.speedup:.2f}x", f"{p.macs / 1e9:.3f}", f"{p.mac_ratio:.2f}x", f"{p.mse:.3g}",
            fid, kid]  # fmt: skip


@handle_errors
def cache_bench(
    source: Annotated[Path, typer.Argument(help="Run folder or checkpoint of a UNet model.")],
    intervals: Annotated[
        str, typer.Option(help="Cache intervals N to measure, comma separated (1 = uncached).")
    ] = "1,2,3,5,10",
    sampler: Annotated[
        sampler_names() | None,
        typer.Option(
            "--sampler",
            "--solver",
            help=f"Any fixed-step sampler or solver (default: {family_defaults()}).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="Sampling steps of every cached run.")] = 100,
    n: Annotated[int, typer.Option("-n", "--num-images", help="Images per configuration.")] = 1000,
    cache_branch: CacheBranch = 1,
    cache_schedule: CacheSchedule = "uniform",
    cache_center: CacheCenter = 0.0,
    cache_mode: CacheMode = "linear",
    baseline: Annotated[
        bool,
        typer.Option(help="Also run the sampler with as many steps as each N makes full calls."),
    ] = True,
    fid: Annotated[
        bool, typer.Option(help="Score FID/KID (--no-fid: timing and MSE only).")
    ] = True,
    guidance: Guidance = 1.0,
    seed: Seed = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 500,
    features: FeatureNet = "classifier",
    classifier: ClassifierPath = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Results folder (default: RUN/cache-bench/<stamp>).", show_default=False),
    ] = None,
    no_ema: NoEma = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
) -> None:
    """Sample with DeepCache at each interval from the same noise: wall-clock speedup, MAC
    ratio, MSE to the uncached images, FID/KID; writes cache-bench.json, cache-bench.png
    (speedup vs FID) and a grid per configuration."""
    request = CacheBenchRequest(
        source, CacheRequest(2, cache_branch, cache_schedule, cache_center, cache_mode).config(),
        intervals=tuple(_intervals(intervals)), sampler=sampler, steps=steps, n=n,
        baseline=baseline, fid=fid, guidance=guidance, seed=0 if seed is None else seed,
        batch_size=batch_size, features=features, classifier=classifier, out=out,
        use_ema=not no_ema,
    )  # fmt: skip
    result = bench_cache(request, machine_settings(data_dir, runs_dir, device), console)
    _table(result)
    console.out.print(str(result.folder))


def _table(result: BenchResult) -> None:
    r, cache = result.report, result.report["cache"]
    console.table(
        f"DeepCache on {r['sampler']}-{r['steps']}: {r['n']} images, branch {cache['branch']}, "
        f"{cache['schedule']} schedule, {cache['mode']} features",
        ["config", "steps", "full/calls", "seconds", "speedup", "GMAC/img", "MAC ratio",
         "MSE", "FID", "KID"],
        [_row(p) for p in result.points],
    )  # fmt: skip
