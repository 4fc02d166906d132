"""``diffkit cache-bench RUN``: DeepCache's speed and quality, interval by interval."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

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
    cache_config,
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

    from diffkit.accel.bench import plot_cache_bench, run_cache_bench
    from diffkit.accel.deepcache import DeepCache
    from diffkit.app.common import check_steps, free_path, model_class_names, source_name
    from diffkit.eval.evaluate import MIN_SAMPLES
    from diffkit.methods.load import load_pipeline
    from diffkit.methods.pipeline import cycle_labels
    from diffkit.runs.layout import run_folder_of, write_json
    from diffkit.runs.plots import save_class_grid, save_grid
    from diffkit.training.hardware import resolve_device

    values = _intervals(intervals)
    seed = 0 if seed is None else seed
    if n < (MIN_SAMPLES if fid else 1) or batch_size < 1:
        raise UsageError(f"-n must be at least {MIN_SAMPLES if fid else 1} and --batch-size >= 1")
    from diffkit.external import is_foreign

    if not source.exists() and not is_foreign(source):
        raise UsageError(f"no run or checkpoint at {source}")
    settings = machine_settings(data_dir, runs_dir, device)
    dev = resolve_device(settings.device)
    pipe = load_pipeline(source, dev, use_ema=not no_ema)
    sampler = sampler or pipe.DEFAULT_SAMPLER
    steps = check_steps(pipe, sampler, steps)
    from diffkit.samplers.registry import sampler_spec

    if sampler_spec(sampler).adaptive:
        raise UsageError(f"--sampler {sampler} is adaptive; cache-bench needs a fixed-step "
                         "sampler")  # fmt: skip
    labels = cycle_labels(pipe.num_classes, n)
    if guidance != 1.0 and labels is None:
        raise UsageError("--guidance needs a class-conditional model")
    cache = cache_config(2, cache_branch, cache_schedule, cache_center, cache_mode)
    try:  # refuse a bad branch or schedule now, before any folder or feature network
        DeepCache.of(pipe, cache, sampler, steps)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    score, common = None, {}
    if fid and pipe.config is None:
        raise UsageError(f"{source} does not say which data it imitates, so cache-bench cannot "
                         "score FID on it; pass --no-fid (timing and MSE only)")  # fmt: skip
    if fid:
        from diffkit.eval.evaluate import Evaluator
        from diffkit.eval.features import load_extractor

        data = pipe.config.data  # what the samples imitate
        extractor = load_extractor(features, data.dataset, settings.runs_dir, dev,
                                   classifier=classifier,
                                   inception_weights=settings.inception_weights,
                                   tf_inception_weights=settings.tf_inception_weights)  # fmt: skip
        evaluator = Evaluator(data.dataset, extractor, settings, data=data, seed=seed,
                              track=console.steps)  # fmt: skip
        score = evaluator.score_images
        about = extractor.about()
        console.features(about)
        common = {"features": features, "feature_sha256": extractor.digest, "feature_net": about}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = out or free_path(run_folder_of(source) / "cache-bench" / stamp)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    report = {
        "source": str(source), "sampler": sampler, "steps": steps, "n": n,
        "seed": seed, "guidance": guidance if labels is not None else None,
        "cache": {"branch": cache_branch, "schedule": cache_schedule,
                  "center": cache_center, "mode": cache_mode},
        "device": str(dev), "batch_size": batch_size,
        "created": datetime.now().isoformat(timespec="seconds"), **common,
    }  # fmt: skip
    done: list = []
    names = model_class_names(pipe)

    def on_point(point, images) -> None:
        done.append(point)
        grid = folder / f"grid-{point.label.replace('=', '')}.png"
        if labels is None:
            save_grid(images[:64], grid)
        else:  # one column per class, as in the training previews
            save_class_grid(images[:64], labels[:64], grid, names)
        write_json(folder / "cache-bench.json", report | {"points": [p.as_dict() for p in done]})
        m = f", FID {point.metrics['fid']:.3f}" if point.metrics else ""
        console.info(f"{point.label}: {point.seconds:.1f} s (speedup {point.speedup:.2f}x, MAC "
                     f"ratio {point.mac_ratio:.2f}x), MSE {point.mse:.3g}{m}")  # fmt: skip

    points = run_cache_bench(
        pipe, intervals=values, cache=cache, sampler=sampler, steps=steps, n=n,
        seed=seed, batch_size=batch_size, labels=labels, guidance=guidance,
        baseline=baseline, score=score, track=console.steps, on_point=on_point,
    )  # fmt: skip
    net = f"{features} (sha256 {common['feature_sha256'][:12]})" if common else None
    plot_cache_bench(points, sampler, folder / "cache-bench.png", run=source_name(source), n=n,
                     features=net)  # fmt: skip
    console.table(
        f"DeepCache on {sampler}-{steps}: {n} images, branch {cache_branch}, "
        f"{cache_schedule} schedule, {cache_mode} features",
        ["config", "steps", "full/calls", "seconds", "speedup", "GMAC/img", "MAC ratio",
         "MSE", "FID", "KID"],
        [_row(p) for p in points],
    )  # fmt: skip
    console.out.print(str(folder))
