"""``diffkit cache-bench RUN``: DeepCache's speed and quality, interval by interval."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffkit.app.bench import CacheBenchRequest
from diffkit.app.bench import cache_bench as bench_cache
from diffkit.app.tables import cache_bench_table
from diffkit.cli import console
from diffkit.cli.choices import family_defaults
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.flags import (
    BATCH,
    CACHE_OPTIONS,
    CLASSIFIER_PATH,
    DATA_DIR,
    DEVICE,
    FEATURES,
    GUIDANCE_SCALE,
    NO_EMA,
    OUTPUT,
    RUNS_DIR,
    SAMPLER,
    SEED,
    any_sampler,
    argument,
    flag,
    option,
    takes,
)
from diffkit.cli.options import settings_of
from diffkit.cli.shared import cache_request, picked


def _intervals(spec: str) -> list[int]:
    try:
        values = sorted({int(v) for v in spec.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"--intervals {spec!r}: give whole numbers, e.g. 1,2,3,5,10") from None
    if not values or values[0] < 1:
        raise UsageError("--intervals: every interval must be at least 1")
    return values


CACHE_BENCH = (
    argument("source", Path, "Run folder or checkpoint of a UNet model.", show_default=True),
    flag("intervals", str, "1,2,3,5,10",
         "Cache intervals N to measure, comma separated (1 = uncached).", None),
    any_sampler(lambda: f"Any fixed-step sampler or solver (default: {family_defaults()})."),
    flag("steps", int, 100, "Sampling steps of every cached run.", SAMPLER),
    flag("n", int, 1000, "Images per configuration.", None, "-n", "--num-images"),
    *CACHE_OPTIONS,
    flag("baseline", bool, True,
         "Also run the sampler with as many steps as each N makes full calls.", None),
    flag("fid", bool, True, "Score FID/KID (--no-fid: timing and MSE only).", None),
    GUIDANCE_SCALE, SEED, BATCH, FEATURES, CLASSIFIER_PATH,
    option("out", Path | None, "Results folder (default: RUN/cache-bench/<stamp>).", OUTPUT),
    NO_EMA, DATA_DIR, RUNS_DIR, DEVICE,
)  # fmt: skip


@handle_errors
@takes(CACHE_BENCH)
def cache_bench(**o: Any) -> None:
    """Sample with DeepCache at each interval from the same noise: wall-clock speedup, MAC
    ratio, MSE to the uncached images, FID/KID; writes cache-bench.json, cache-bench.png
    (speedup vs FID) and a grid per configuration."""
    request = picked(CacheBenchRequest, o, cache=cache_request(o, 2).config(),
                     intervals=tuple(_intervals(o["intervals"])), seed=o["seed"] or 0,
                     use_ema=not o["no_ema"])  # fmt: skip
    settings = settings_of(o)
    result = bench_cache(request, settings, console)
    console.table(*cache_bench_table(result))
    console.out.print(str(result.folder))
