"""Benchmarks of a trained model: DeepCache interval by interval (cache-bench) and
single-step denoisers across noise levels (denoise-bench)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffkit.app.common import (
    check_source,
    check_steps,
    free_path,
    model_class_names,
    source_name,
)
from diffkit.app.report import QUIET, Reporter
from diffkit.errors import UsageError

if TYPE_CHECKING:
    from diffkit.accel import CacheConfig
    from diffkit.accel.bench import BenchPoint
    from diffkit.config.settings import Settings
    from diffkit.eval.denoise import DenoisePoint


@dataclass(frozen=True)
class CacheBenchRequest:
    """DeepCache at each of ``intervals`` (1: uncached) on ``sampler``-``steps``, ``n``
    images from the same noise; ``cache`` holds its other options (its interval is
    replaced by each of ``intervals``). Built, ``n``, ``batch_size`` and ``source`` are
    checked."""

    source: Path
    cache: CacheConfig
    intervals: tuple[int, ...] = (1, 2, 3, 5, 10)
    sampler: str | None = None  # default: the model's
    steps: int = 100
    n: int = 1000
    baseline: bool = True  # also the sampler with as many steps as each N makes full calls
    fid: bool = True  # score FID/KID (else timing and MSE only)
    guidance: float = 1.0
    seed: int = 0
    batch_size: int = 500
    features: str = "classifier"
    classifier: Path | None = None
    out: Path | None = None  # default: RUN/cache-bench/<stamp>
    use_ema: bool = True

    def __post_init__(self) -> None:
        from diffkit.eval.evaluate import MIN_SAMPLES

        least = MIN_SAMPLES if self.fid else 1
        if self.n < least or self.batch_size < 1:
            raise UsageError(f"-n must be at least {least} and --batch-size >= 1")
        check_source(self.source, "run or checkpoint")


@dataclass(frozen=True)
class BenchResult:
    """A benchmark's ``folder``, the report written there and its points."""

    folder: Path
    report: dict[str, Any]
    points: list[Any]  # BenchPoint or DenoisePoint


def cache_bench(
    request: CacheBenchRequest, settings: Settings, report: Reporter = QUIET
) -> BenchResult:
    """Sample with DeepCache at each interval: speedup, MAC ratio, MSE to the uncached
    images, FID/KID; writes cache-bench.json (after every point), cache-bench.png and a
    grid per configuration into the folder."""
    from diffkit.accel.bench import plot_cache_bench, run_cache_bench
    from diffkit.methods.load import load_pipeline
    from diffkit.methods.pipeline import cycle_labels
    from diffkit.training.hardware import resolve_device

    r = request
    dev = resolve_device(settings.device)
    pipe = load_pipeline(r.source, dev, use_ema=r.use_ema)
    sampler, steps = _cached_sampler(pipe, r)
    labels = cycle_labels(pipe.num_classes, r.n)
    if r.guidance != 1.0 and labels is None:
        raise UsageError("--guidance needs a class-conditional model")
    _check_cache(pipe, r.cache, sampler, steps)
    score, common = _cache_scorer(pipe, r, settings, dev, report)
    folder = _bench_folder(r)
    record = {
        "source": str(r.source), "sampler": sampler, "steps": steps, "n": r.n,
        "seed": r.seed, "guidance": r.guidance if labels is not None else None,
        "cache": {"branch": r.cache.branch, "schedule": r.cache.schedule,
                  "center": r.cache.center, "mode": r.cache.features},
        "device": str(dev), "batch_size": r.batch_size,
        "created": datetime.now().isoformat(timespec="seconds"), **common,
    }  # fmt: skip
    on_point = _point_writer(folder, record, labels, model_class_names(pipe), report)
    points = run_cache_bench(
        pipe, intervals=list(r.intervals), cache=r.cache, sampler=sampler, steps=steps, n=r.n,
        seed=r.seed, batch_size=r.batch_size, labels=labels, guidance=r.guidance,
        baseline=r.baseline, score=score, track=report.steps, on_point=on_point,
    )  # fmt: skip
    net = f"{r.features} (sha256 {common['feature_sha256'][:12]})" if common else None
    plot_cache_bench(points, sampler, folder / "cache-bench.png", run=source_name(r.source),
                     n=r.n, features=net)  # fmt: skip
    return BenchResult(folder, record | {"points": [p.as_dict() for p in points]}, points)


def _cached_sampler(pipe, request: CacheBenchRequest) -> tuple[str, int]:
    """(sampler, steps) of the request, checked: DeepCache needs a fixed-step sampler."""
    from diffkit.samplers.registry import sampler_spec

    sampler = request.sampler or pipe.DEFAULT_SAMPLER
    steps = check_steps(pipe, sampler, request.steps)
    if sampler_spec(sampler).adaptive:
        raise UsageError(f"--sampler {sampler} is adaptive; cache-bench needs a fixed-step "
                         "sampler")  # fmt: skip
    return sampler, steps


def _check_cache(pipe, cache: CacheConfig, sampler: str, steps: int) -> None:
    """Refuse a bad branch or schedule now, before any folder or feature network."""
    from diffkit.accel.deepcache import DeepCache

    try:
        DeepCache.of(pipe, cache, sampler, steps)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _cache_scorer(pipe, request: CacheBenchRequest, settings: Settings, dev,
                  report: Reporter):  # fmt: skip
    """(``score(images, labels)``, what the report records of the feature network); with
    no FID asked, (None, {})."""
    from diffkit.app.evaluate import load_features, scorer

    if not request.fid:
        return None, {}
    if pipe.config is None:
        raise UsageError(f"{request.source} does not say which data it imitates, so "
                         "cache-bench cannot score FID on it; pass --no-fid (timing and MSE "
                         "only)")  # fmt: skip
    data = pipe.config.data  # what the samples imitate
    extractor = load_features(request.features, data.dataset, request.classifier, settings, dev)
    evaluator = scorer(extractor, data, settings, request.seed, report)
    return evaluator.score_images, {"features": request.features,
                                    "feature_sha256": extractor.digest,
                                    "feature_net": extractor.about()}  # fmt: skip


def _bench_folder(request: CacheBenchRequest) -> Path:
    """``request.out``, or a fresh RUN/cache-bench/<stamp>; made now."""
    from diffkit.runs.layout import run_folder_of

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = request.out or free_path(run_folder_of(request.source) / "cache-bench" / stamp)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _point_writer(folder: Path, record: dict[str, Any], labels, names: tuple[str, ...],
                  report: Reporter):  # fmt: skip
    """``on_point(point, images)``: each point's grid (a column per class for a conditional
    model, as in the training previews), cache-bench.json rewritten with the points so far
    and a line reported."""
    from diffkit.runs.layout import write_json
    from diffkit.runs.plots import save_class_grid, save_grid

    done: list[BenchPoint] = []

    def on_point(point: BenchPoint, images) -> None:
        done.append(point)
        grid = folder / f"grid-{point.label.replace('=', '')}.png"
        if labels is None:
            save_grid(images[:64], grid)
        else:
            save_class_grid(images[:64], labels[:64], grid, names)
        write_json(folder / "cache-bench.json", record | {"points": [p.as_dict() for p in done]})
        m = f", FID {point.metrics['fid']:.3f}" if point.metrics else ""
        report.info(f"{point.label}: {point.seconds:.1f} s (speedup {point.speedup:.2f}x, MAC "
                    f"ratio {point.mac_ratio:.2f}x), MSE {point.mse:.3g}{m}")  # fmt: skip

    return on_point


BASELINES = ("blur", "oracle")


@dataclass(frozen=True)
class DenoiseBenchRequest:
    """Denoise ``n`` test images at each of ``sigmas`` (images in [0, 1]) with the
    denoisers of ``runs`` and the ``baselines`` (blur: the best Gaussian per sigma; oracle:
    the training set's posterior mean). Built, the baselines are checked."""

    runs: tuple[Path, ...] = ()
    sigmas: tuple[float, ...] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)
    baselines: tuple[str, ...] = BASELINES
    pure_noise: bool = False  # also denoise pure noise: distance to the mean digit
    n: int = 1000
    classifier: Path | None = None
    out: Path = Path("denoise-bench")
    seed: int = 0
    batch_size: int = 500

    def __post_init__(self) -> None:
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise UsageError(f"--baselines: unknown {', '.join(unknown)}; use blur, oracle or "
                             "none")  # fmt: skip
        if not self.runs and not self.baselines:
            raise UsageError("nothing to benchmark: give runs or --baselines blur,oracle")


def denoise_bench(
    request: DenoiseBenchRequest, settings: Settings, report: Reporter = QUIET
) -> BenchResult:
    """PSNR and MSE per model and sigma, classifier accuracy of the denoised digits; writes
    bench.json, psnr.png (PSNR vs sigma) and a grid per sigma (pure-noise.png) to ``out``."""
    from diffkit.data.loader import to_unit_range
    from diffkit.eval.denoise import as_dicts, plot_psnr, run_bench
    from diffkit.methods.denoiser import load_denoiser
    from diffkit.runs.layout import check_writable, write_json
    from diffkit.runs.plots import save_grid
    from diffkit.training.hardware import resolve_device

    r, out = request, request.out
    dev = resolve_device(settings.device)
    models = [load_denoiser(run, dev) for run in r.runs]
    datasets = {m.dataset or "mnist" for m in models} or {"mnist"}
    if len(datasets) > 1:
        raise UsageError(f"the runs were trained on different datasets: {', '.join(datasets)}")
    dataset = datasets.pop()
    check_writable(out)
    test = _split(dataset, "test", settings)
    x = to_unit_range(test.images[: r.n])
    labels = test.labels[: r.n] if test.labels is not None else None
    train = None
    if "oracle" in r.baselines or r.pure_noise:
        train = to_unit_range(_split(dataset, "train", settings).images)
    widths = _add_baselines(models, r.baselines, test.images[-500:], train)
    classify, about = _classifier(dataset, settings, dev, r.classifier, labels, report)
    points, grids = run_bench(models, x, labels, r.sigmas, classify=classify, seed=r.seed,
                              batch_size=r.batch_size,
                              on_point=lambda p: report.info(_denoise_line(p)))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for sigma, grid in grids.items():
        save_grid(grid, out / f"grid-sigma{sigma:g}.png", nrow=10)
    plot_psnr(points, out / "psnr.png")
    record = {"runs": [str(run) for run in r.runs], "dataset": dataset, "n": x.shape[0],
              "sigmas": list(r.sigmas), "seed": r.seed,
              "classifier_sha256": about["sha256"] if about else None, "classifier": about,
              "blur_widths": {f"{k:g}": v for k, v in widths.items()},
              "points": as_dicts(points)}  # fmt: skip
    if r.pure_noise:
        record["pure_noise"] = _pure_noise(models, x, train, r.seed, out, report)
    write_json(out / "bench.json", record)
    return BenchResult(out, record, points)


def _split(dataset: str, split: str, settings: Settings):
    from diffkit.config.run import DataConfig
    from diffkit.data.registry import load_dataset

    return load_dataset(DataConfig(dataset=dataset), settings.data_dir, split, download=False)


def _add_baselines(models: list, baselines: tuple[str, ...], held_out, train) -> dict:
    """Append the baselines asked for to ``models``; the blur's width per sigma (fitted on
    ``held_out``, uint8 test images that are not benchmarked) or {}."""
    from diffkit.data.loader import to_unit_range
    from diffkit.eval.denoise import blur_denoiser, oracle_denoiser

    widths: dict[float, float] = {}
    if "blur" in baselines:
        blur, widths = blur_denoiser(to_unit_range(held_out))
        models.append(blur)
    if "oracle" in baselines:
        models.append(oracle_denoiser(train))
    return widths


def _denoise_line(p: DenoisePoint) -> str:
    acc = f"  acc {p.accuracy:.3f}" if p.accuracy is not None else ""
    return f"sigma {p.sigma:<4g} {p.model:<28} PSNR {p.psnr:6.2f} dB  MSE {p.mse:.5f}{acc}"


def _pure_noise(models: list, x, train, seed: int, out: Path, report: Reporter) -> dict:
    """Denoise pure noise at sigma 0.5: each model's RMS to the mean training image and
    spread (pure-noise.png shows them)."""
    from diffkit.eval.denoise import pure_noise
    from diffkit.runs.plots import save_grid

    rows, grid = pure_noise(models, tuple(x.shape[1:]), train.mean(0), 0.5, seed=seed)
    save_grid(grid, out / "pure-noise.png", nrow=9)
    for row in rows:
        report.info(f"pure noise  {row['model']:<28} RMS to the mean digit "
                    f"{row['rms_to_mean']:.4f}, spread {row['spread']:.4f}")  # fmt: skip
    return {"sigma": 0.5, "models": rows}


def _classifier(dataset: str, settings: Settings, device, classifier: Path | None, labels,
                report: Reporter):  # fmt: skip
    """``classify(images) -> labels`` with the dataset's feature classifier and its
    ``about()``, or None (no labels, or no qualified classifier and none named: accuracy is
    then left out)."""
    if labels is None:
        return None, None
    from diffkit.data.loader import to_uint8
    from diffkit.eval.features import load_extractor

    try:
        extractor = load_extractor("classifier", dataset, settings.runs_dir, device,
                                   classifier=classifier)  # fmt: skip
    except (OSError, ValueError, RuntimeError) as exc:
        if classifier is not None:
            raise
        report.info(f"no classifier accuracy ({str(exc).splitlines()[0]})")
        return None, None

    def classify(images):
        import torch

        logits = torch.cat([extractor(to_uint8(part).to(device))[1].cpu()
                            for part in images.split(500)])  # fmt: skip
        return logits.argmax(1)

    about = extractor.about()
    report.features(about)
    return classify, about
