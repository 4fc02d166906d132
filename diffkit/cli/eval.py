"""``diffkit eval RUN_OR_SAMPLES``: FID / KID / IS / precision-recall against the test split."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from diffkit.app.common import check_steps, free_path, hinted, progress_total, source_name
from diffkit.cli import console
from diffkit.cli.choices import family_defaults, sampler_names
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.options import (
    Atol,
    ClassifierPath,
    Compile,
    ControlEnd,
    ControlScale,
    ControlStart,
    DataDir,
    Device,
    Eta,
    FeatureNet,
    GuessMode,
    Guidance,
    HintIsEdges,
    HintSpec,
    Lpips,
    LpipsNet,
    LpipsWeights,
    NoEma,
    Rtol,
    RunsDir,
    Seed,
    SpacingOpt,
    TFInceptionWeights,
    machine_settings,
)
from diffkit.runs.layout import run_folder_of

if TYPE_CHECKING:
    from diffkit.eval.features import FeatureExtractor
    from diffkit.eval.sweep import Setting


def _is_checkpoint(path: Path) -> bool:
    """A run folder or a diffkit checkpoint file (as opposed to a samples file/folder)."""
    from safetensors import SafetensorError, safe_open

    from diffkit.external import is_foreign
    from diffkit.runs.checkpoint import FORMAT

    if is_foreign(path):  # a diffusers pipeline folder or hf:ORG/NAME
        return True
    if path.is_dir():
        from diffkit.eval.evaluate import SAMPLES_FILE
        from diffkit.runs.samples import sample_shards

        samples = (path / "sample.json").exists() or (path / SAMPLES_FILE).exists()
        return (path / "config.json").is_file() and not (samples or sample_shards(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("diffkit.format") == FORMAT
    except (SafetensorError, OSError):
        return False


def _dataset_of_samples(file: Path) -> tuple[str | None, dict]:
    """The dataset a samples folder was drawn for: sample.json's ``data`` (or its source
    run's config)."""
    try:
        meta = json.loads((file.parent / "sample.json").read_text())
        if isinstance(meta.get("data"), dict) and "dataset" in meta["data"]:
            data = meta["data"]
        else:
            src = Path(meta["source"])
            data = json.loads((run_folder_of(src) / "config.json").read_text())["data"]
        name = data["dataset"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # unknown provenance
        return None, {}
    return (name, data) if isinstance(name, str) and isinstance(data, dict) else (None, {})


def _rows(metrics: dict[str, Any], floor: dict[str, Any] | None) -> list[list[str]]:
    def fmt(m: dict[str, Any] | None, key: str) -> str:
        if m is None or key not in m:
            return "-"
        if key == "kid":
            return f"{m[key]:.4g} ± {m[key + '_std']:.2g}"
        if key == "is":
            return f"{m[key]:.3f} ± {m[key + '_std']:.3f}"
        return f"{m[key]:.4f}" if key in ("precision", "recall") else f"{m[key]:.3f}"

    names = {"fid": "FID", "kid": "KID", "is": "IS", "precision": "precision",
             "recall": "recall"}  # fmt: skip
    rows = [[label, fmt(metrics, k), fmt(floor, k)] for k, label in names.items()]
    for key, label in (("recon_mse", "reconstruction MSE"), ("psnr", "PSNR (dB)")):
        if key in metrics:
            rows.append([label, f"{metrics[key]:.4g}", "-"])

    def spread(m: dict[str, Any] | None) -> str:
        return "-" if m is None else f"{m['mean']:.4f} ± {m['std']:.3f}"

    for key, label in (("lpips_diversity", "LPIPS diversity"), ("lpips", "LPIPS to input")):
        if key in metrics:
            rows.append([label, spread(metrics[key]), spread((floor or {}).get(key))])
    for cls, acc in metrics.get("class_accuracy", {}).items():
        rows.append([f"class accuracy [{cls}]", f"{acc:.4f}", "-"])
    edges = metrics.get("edges", {})
    for key, label in (("f1", "edge F1 (1 px)"), ("f1_exact", "edge F1 (exact)"),
                       ("precision", "edge precision"),
                       ("recall", "edge recall"), ("sobel_l1", "Sobel L1")):  # fmt: skip
        if key in edges:
            rows.append([label, f"{edges[key]:.4f}", "-"])
    return rows


def _diversity(perceptual, images, data, settings, seed: int):
    """LPIPS diversity of the samples and, as its floor, of as many real test images."""
    from diffkit.data.registry import load_dataset

    real = load_dataset(data, settings.data_dir, "test", download=settings.download).images
    pick = _subset(real.shape[0], images.shape[0], seed)
    console.info(f"LPIPS ({perceptual.net}) diversity of {images.shape[0]} samples ...")
    return perceptual.diversity(images, seed=seed), perceptual.diversity(real[pick], seed=seed)


def _subset(total: int, n: int, seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=g)[: min(n, total)]


def _is_vae(source: Path) -> bool:
    """A `diffkit train vae` run folder or its vae.safetensors."""
    from diffkit.methods.vae import VAE_FILE

    return (source / VAE_FILE).is_file() if source.is_dir() else source.name == VAE_FILE


def _evaluate_vae(source, n, seed, batch_size, features, classifier, settings, dev,
                  perceptual, out) -> None:  # fmt: skip
    """Score an autoencoder by its reconstructions of ``n`` random test images: MSE, PSNR,
    LPIPS to the input (with --lpips) and FID/KID/IS/precision/recall of the
    reconstructions against the test split (rFID), beside the real floor."""
    import math

    from diffkit.data.loader import to_uint8
    from diffkit.data.registry import load_dataset
    from diffkit.eval.evaluate import MIN_SAMPLES, Evaluator
    from diffkit.eval.features import load_extractor
    from diffkit.methods.vae import load_codec
    from diffkit.runs.layout import check_writable, run_folder_of, write_json

    codec = load_codec(source, dev)
    data = codec.config.data
    test = load_dataset(data, settings.data_dir, "test", download=settings.download).images
    images = test[_subset(test.shape[0], n, seed)]
    if images.shape[0] < MIN_SAMPLES:
        raise UsageError(f"the {data.dataset} test split has {images.shape[0]} images; "
                         f"need {MIN_SAMPLES}")  # fmt: skip
    out = out or run_folder_of(source) / "eval"
    check_writable(out)
    extractor = load_extractor(features, data.dataset, settings.runs_dir, dev,
                               classifier=classifier, inception_weights=settings.inception_weights,
                               tf_inception_weights=settings.tf_inception_weights)  # fmt: skip
    evaluator = Evaluator(data.dataset, extractor, settings, data=data, seed=seed,
                          track=console.steps)  # fmt: skip
    console.features(extractor.about())
    floor = evaluator.floor(images.shape[0])
    console.info(f"reconstructing {images.shape[0]} test images ...")
    x = images.float().div(127.5).sub(1)
    recon = codec.decode(codec.encode(x, batch_size=batch_size), batch_size=batch_size)
    recon = recon.clamp(-1, 1)
    mse = float((recon - x).pow(2).mean())
    metrics = evaluator.score_images(to_uint8(recon)) | {
        "recon_mse": mse, "psnr": 10 * math.log10(4 / max(mse, 1e-12)),  # peak-to-peak 2
    }  # fmt: skip
    if perceptual is not None:
        d = perceptual.distance(x, recon)
        metrics["lpips"] = {"mean": float(d.mean()), "std": float(d.std()), "pairs": len(d)}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    report = {
        "source": str(source), "kind": "vae-reconstruction", "dataset": data.dataset,
        "split": "test", "n": images.shape[0], "seed": seed, "features": features,
        "feature_sha256": extractor.digest, "feature_net": extractor.about(),
        "vae_sha256": codec.digest, "device": str(dev),
        "created": datetime.now().isoformat(timespec="seconds"),
        "metrics": metrics, "floor": floor,
    }  # fmt: skip
    if perceptual is not None:
        report["lpips"] = perceptual.about()
    path = free_path(out / f"{stamp}.json")
    write_json(path, report)
    title = f"{source.name}: {images.shape[0]} reconstructions vs {data.dataset} test ({features})"
    console.table(title, ["metric", "reconstructions", "real floor"], _rows(metrics, floor))
    console.out.print(str(path))


def _scorer(evaluator, pipe, hints):
    """``score(images, labels) -> metrics``: the evaluator's, plus edge consistency with
    the hints for a ControlNet (image i had hint i mod len(hints))."""
    if hints is None:
        return evaluator.score_images
    import torch

    from diffkit.eval.edges import edge_scores

    def score(images, labels):
        rows = torch.arange(images.shape[0]) % len(hints)
        edges = edge_scores(images, hints, rows, pipe.model.hint_config)
        return evaluator.score_images(images, labels) | {"edges": edges}

    return score


@handle_errors
def evaluate(
    source: Annotated[
        Path,
        typer.Argument(
            help="Run folder, checkpoint, samples folder / one of its .safetensors shards, or "
            "a VAE run.",
            show_default=False,
        ),
    ],
    n: Annotated[
        int, typer.Option("-n", "--num-images", help="Images to generate and score.")
    ] = 10000,
    sampler: Annotated[
        sampler_names() | None,
        typer.Option(
            "--sampler",
            "--solver",
            help="Sampler or ODE solver for runs (see `diffkit sample --help`; default: "
            f"{family_defaults()}).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(help="Sampling steps (default: T for ddpm, else 50).", show_default=False),
    ] = None,
    eta: Eta = 0.0,
    spacing: SpacingOpt = None,
    rtol: Rtol = 1e-3,
    atol: Atol = 1e-3,
    guidance: Guidance = 1.0,
    seed: Seed = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 500,
    features: FeatureNet = "classifier",
    classifier: ClassifierPath = None,
    inception_weights: Annotated[
        Path | None,
        typer.Option(
            help="InceptionV3 .pth (env DIFFKIT_INCEPTION_WEIGHTS; default: torch hub cache).",
            show_default=False,
        ),
    ] = None,
    tf_inception_weights: TFInceptionWeights = None,
    lpips: Lpips = False,
    lpips_net: LpipsNet = "alex",
    lpips_weights: LpipsWeights = None,
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset of a samples file without provenance.", show_default=False),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            help="Sweep step counts (steps=1,2,5,10,20,50,100,1000), for class-conditional "
            "models guidance scales (guidance=0,1,2,3,5,7) at --steps, or for ControlNet "
            "runs control scales (control_scale=0,0.5,1,1.5,2).",
            show_default=False,
        ),
    ] = None,
    samplers: Annotated[
        str | None,
        typer.Option(
            help="Samplers of a --sweep, comma separated (default: ddpm,ddim for DDPMs, "
            "euler for flows).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for results (default: SOURCE/eval).", show_default=False),
    ] = None,
    hint: HintSpec = None,
    hint_is_edges: HintIsEdges = False,
    control_scale: ControlScale = 1.0,
    control_start: ControlStart = 0.0,
    control_end: ControlEnd = 1.0,
    guess_mode: GuessMode = False,
    no_ema: NoEma = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    compile_net: Compile = None,
) -> None:
    """Score a model or saved samples: FID, KID, IS, precision/recall (+ class accuracy),
    beside the real-vs-real floor; results go to SOURCE/eval/<stamp>.json. A ControlNet
    run is scored on --hint (e.g. mnist:test) and also for edge consistency (edge F1 at
    1 px and Sobel L1 against each hint's source). A VAE run is scored by its
    reconstructions of -n test images (MSE, PSNR, rFID; LPIPS with --lpips)."""

    from diffkit.eval.evaluate import MIN_SAMPLES, Evaluator
    from diffkit.eval.features import load_extractor
    from diffkit.runs.layout import check_writable, write_json
    from diffkit.training.hardware import resolve_device

    if n < MIN_SAMPLES or batch_size < 1:
        raise UsageError(f"-n must be at least {MIN_SAMPLES} and --batch-size at least 1")
    from diffkit.external import is_foreign

    if not source.exists() and not is_foreign(source):
        raise UsageError(f"no run, checkpoint or samples at {source}")
    settings = machine_settings(data_dir, runs_dir, device, compile_net)
    for key, value in (("inception_weights", inception_weights),
                       ("tf_inception_weights", tf_inception_weights),
                       ("lpips_weights", lpips_weights)):  # fmt: skip
        if value is not None:
            settings = settings.model_copy(update={key: value})
    dev = resolve_device(settings.device)
    seed = 0 if seed is None else seed
    perceptual = None
    if lpips:  # loaded first: a missing package or backbone file fails before any work
        from diffkit.eval.lpips import load_lpips

        perceptual = load_lpips(lpips_net, settings.lpips_weights, dev)
    if _is_vae(source):
        if sweep or hint is not None:
            raise UsageError("a VAE run is scored on its reconstructions: no --sweep or --hint")
        _evaluate_vae(source, n, seed, batch_size, features, classifier, settings, dev,
                      perceptual, out)  # fmt: skip
        return
    src = _Source.open(source, dataset, n, dev, use_ema=not no_ema)
    control = {"scale": control_scale, "start": control_start, "end": control_end,
               "guess": guess_mode}  # fmt: skip
    hints = None
    if src.pipe is not None:
        src.pipe, hints = hinted(src.pipe, hint, hint_is_edges, control, settings.data_dir)
    elif hint is not None:
        raise UsageError("--hint scores a ControlNet run as it samples, not saved samples")
    if src.pipe is not None:
        src.pipe = src.pipe.compiled(settings.compile_with, console.warning)
    elif compile_net:
        raise UsageError("--compile applies to a model that samples, not to saved samples")
    plan = _sweep_plan(src, sweep, samplers, steps, guidance, hints) if sweep else None
    if src.pipe is not None and plan is None:
        sampler = sampler or src.pipe.DEFAULT_SAMPLER
        steps = check_steps(src.pipe, sampler, steps)
        if guidance != 1.0 and src.pipe.num_classes is None and hints is None:
            raise UsageError("--guidance needs a class-conditional model")
    out = out or src.folder / "eval"
    check_writable(out)  # a read-only folder fails now, not after the scoring

    extractor = load_extractor(
        features, src.data.dataset, settings.runs_dir, dev,
        classifier=classifier, inception_weights=settings.inception_weights,
        tf_inception_weights=settings.tf_inception_weights,
    )  # fmt: skip
    count = n if src.pipe is not None else src.images.shape[0]
    _check_labels(src, extractor.num_classes)
    _check_memory(src, count, extractor)
    console.info(f"reference: {src.data.dataset} test split, {features} features "
                 f"(sha256 {extractor.digest[:12]})")  # fmt: skip
    evaluator = Evaluator(src.data.dataset, extractor, settings, data=src.data, seed=seed,
                          track=console.steps)  # fmt: skip
    about = extractor.about()  # after the reference: it may have measured the accuracy
    console.features(about)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    common = {
        "source": str(source), "dataset": src.data.dataset, "features": features,
        "feature_sha256": extractor.digest, "feature_net": about, "seed": seed,
        "device": str(dev),
        "created": datetime.now().isoformat(timespec="seconds"),
    }  # fmt: skip
    if hints is not None:
        common |= {"hint": hint, "control": control | {"hint_is_edges": hint_is_edges}}
    if perceptual is not None:
        common["lpips"] = perceptual.about()
    if plan is not None:
        if perceptual is not None:
            raise UsageError("--lpips scores one evaluation, not a --sweep")
        _run_sweep(src.pipe, evaluator, plan, n, seed, (eta, spacing), batch_size,
                   out / f"{stamp}-sweep", common, hints)  # fmt: skip
        return
    floor = evaluator.floor(count)  # first: too few real images fails before sampling
    images, labels = src.images, src.labels
    if src.pipe is not None:
        grid = (eta, spacing)
        images, labels, gen_info = _generate(
            src.pipe, n, sampler, steps, grid, seed, batch_size, guidance, (rtol, atol), hints
        )
        common |= gen_info
        if settings.compile:  # False: torch.compile failed and sampling fell back to eager
            common["compiled"] = src.pipe.net.active
    console.info(f"scoring {images.shape[0]} images ...")
    metrics = _scorer(evaluator, src.pipe, hints)(images, labels)
    if perceptual is not None:
        metrics["lpips_diversity"], floor["lpips_diversity"] = _diversity(
            perceptual, images, src.data, settings, seed
        )
    path = free_path(out / f"{stamp}.json")
    write_json(path, common | {"n": images.shape[0], "metrics": metrics, "floor": floor})
    title = f"{source.name}: {images.shape[0]} images vs {src.data.dataset} test ({features})"
    console.table(title, ["metric", "samples", "real floor"], _rows(metrics, floor))
    console.out.print(str(path))


@dataclass
class _Source:
    """What ``diffkit eval`` scores: a model to sample (``pipe``) or stored ``images``."""

    data: Any  # DataConfig of the dataset the images imitate
    folder: Path  # where eval/ goes by default
    pipe: Any = None
    images: Any = None
    labels: Any = None

    @classmethod
    def open(cls, source: Path, dataset: str | None, n: int, device, use_ema: bool) -> _Source:
        from diffkit.config.resolve import ConfigError, validate
        from diffkit.config.run import DataConfig
        from diffkit.eval.evaluate import MIN_SAMPLES, load_samples

        if _is_checkpoint(source):
            from diffkit.methods.load import load_pipeline

            pipe = load_pipeline(source, device, use_ema=use_ema)
            if pipe.config is None:  # a foreign model: the data it imitates must be named
                return cls(_foreign_data(dataset, pipe, source), Path.cwd(), pipe=pipe)
            if dataset is not None and dataset != pipe.config.data.dataset:
                raise UsageError(
                    f"--dataset {dataset} differs from the model's {pipe.config.data.dataset}"
                )
            return cls(pipe.config.data, run_folder_of(source), pipe=pipe)
        images, labels, file = load_samples(source, limit=n)
        found, stored = _dataset_of_samples(file)
        name = dataset or found
        if name is None:
            raise UsageError(f"cannot tell which dataset {file} imitates; pass --dataset")
        if images.shape[0] < MIN_SAMPLES:
            raise UsageError(f"{file} holds {images.shape[0]} samples; need {MIN_SAMPLES}")
        try:
            data = validate(DataConfig, stored if found == name else {"dataset": name})
        except ConfigError as exc:
            where = "--dataset" if found != name else str(file.parent / "sample.json")
            raise ConfigError(f"{where}: {exc}") from None
        return cls(data, file.parent, images=images, labels=labels)


def _foreign_data(dataset: str | None, pipe, source: Path):
    """The data a foreign model's samples are scored against: ``--dataset``, whose images
    must have the model's shape."""
    from diffkit.config.resolve import validate
    from diffkit.config.run import DataConfig
    from diffkit.data.registry import image_shape

    if dataset is None:
        raise UsageError(f"{source} does not say which data it imitates; pass --dataset")
    channels, h, w = pipe.model.sample_shape
    data = validate(DataConfig, {"dataset": dataset, "channels": min(channels, 3),
                                 "image_size": h})  # fmt: skip
    if image_shape(data) != (channels, h) or h != w:
        c, size = image_shape(data)
        raise UsageError(f"{source} draws {channels}x{h}x{w} images; {dataset} has "
                         f"{c}x{size}x{size}")  # fmt: skip
    return data


@dataclass
class _Plan:
    key: str  # "steps", "guidance" or "control_scale"
    samplers: list[str]
    settings: list[Setting]


def _sweep_plan(
    src: _Source,
    spec: str,
    samplers: str | None,
    steps: int | None,
    guidance: float,
    hints=None,
) -> _Plan:
    """Step counts at ``guidance`` (for a conditional model), or guidance scales at
    ``steps`` (default 50; DDPM with T steps would be slow for a sweep)."""
    from diffkit.eval.sweep import Setting, parse_sweep
    from diffkit.samplers.registry import fixed_step

    if src.pipe is None:
        raise UsageError("--sweep needs a run or checkpoint, not saved samples")
    try:
        key, values = parse_sweep(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    pipe = src.pipe
    if samplers is None:
        samplers = "ddpm,ddim" if "ddpm" in pipe.SAMPLERS else pipe.DEFAULT_SAMPLER
    names = [s.strip() for s in samplers.split(",") if s.strip()]
    sweepable = fixed_step(pipe.SAMPLERS)  # an adaptive solver has no step count to sweep
    bad = [s for s in names if s not in sweepable]
    if bad or not names:
        raise UsageError(f"--samplers: cannot sweep {', '.join(bad) or '(none)'} here; use "
                         f"{','.join(sweepable)}")  # fmt: skip
    conditional = pipe.num_classes is not None or hints is not None
    w = guidance if conditional else None
    if key == "guidance":
        if not conditional:
            raise UsageError("--sweep guidance=... needs a class-conditional model")
        s = check_steps(pipe, names[0], steps)
        return _Plan(key, names, [Setting(s, v) for v in values])
    if key == "control_scale":
        if hints is None:
            raise UsageError("--sweep control_scale=... needs a ControlNet run and --hint")
        s = check_steps(pipe, names[0], steps)
        return _Plan(key, names, [Setting(s, w, v) for v in values])
    for s in values:
        check_steps(pipe, names[0], int(s))
    return _Plan(key, names, [Setting(int(s), w) for s in values])


def _check_labels(src: _Source, num_classes: int) -> None:
    """Stored class labels must index the feature network's classes, or class accuracy
    would fail (or be nonsense) after the whole scoring."""
    if src.labels is None or len(src.labels) == 0:
        return
    low, high = int(src.labels.min()), int(src.labels.max())
    bad = low if low < 0 else high if high >= num_classes else None
    if bad is not None:
        raise UsageError(f"samples in {src.folder}: label {bad} is outside the feature "
                         f"network's classes 0..{num_classes - 1}")  # fmt: skip


def _check_memory(src: _Source, n: int, extractor: FeatureExtractor) -> None:
    """Refuse an ``n`` whose images and features cannot fit in RAM, before allocating any.

    A model's samples exist as the float32 batches and their concatenation (after the
    initial noise in its own space); the samples' and the real floor's features follow."""
    from diffkit.data.registry import image_shape
    from diffkit.resources import check_memory

    per_image = 2 * 4 * (extractor.feature_dim + extractor.num_classes)
    if src.pipe is not None:
        channels, size = image_shape(src.data)
        per_image += 4 * math.prod(src.pipe.model.sample_shape) + 2 * 4 * channels * size**2
    what = f"{'generating and ' if src.pipe is not None else ''}scoring {n} images"
    check_memory(n * per_image, what)


def _generate(pipe, n, sampler, steps, grid, seed, batch_size, guidance, tolerances, hints=None):
    """Sample ``n`` images; a class-conditional model draws every class equally often, or
    with hints each hint's source class. ``grid`` is (eta, spacing)."""
    import time

    from diffkit.methods.pipeline import cycle_labels
    from diffkit.samplers.registry import sampler_spec

    steps = check_steps(pipe, sampler, steps)
    labels, cond = cycle_labels(pipe.num_classes, n), None
    if hints is not None:
        from diffkit.methods.controlnet import hinted_batch

        labels, cond, _ = hinted_batch(pipe, hints, n)
    total = progress_total(sampler, steps, n, batch_size)
    eta, spacing = grid
    given = {"eta": eta, "spacing": spacing, "rtol": tolerances[0], "atol": tolerances[1]}
    options = {k: v for k, v in given.items() if k in pipe.reads(sampler) and v is not None}
    with console.steps(f"{sampler}-{steps}, {n} images", total) as advance:
        start = time.perf_counter()
        result = pipe.sample(
            n,
            sampler=sampler,
            steps=steps,
            seed=seed,
            batch_size=batch_size,
            on_step=advance,
            labels=labels,
            cond=cond,
            guidance=guidance,
            **options,
        )
        wall = time.perf_counter() - start
    images = result.images
    spec = sampler_spec(sampler)
    info = {"sampler": sampler, "steps": None if spec.adaptive else steps,
            "nfe": result.nfe, "eta": eta, **({"spacing": spacing} if "spacing" in options
                                                else {}),
            **({"rtol": tolerances[0], "atol": tolerances[1]}
                                                 if "rtol" in spec.options else {}),
            "sample_seconds": wall, "ms_per_image": 1000 * wall / n}  # fmt: skip
    if labels is not None or hints is not None:
        info["guidance"] = guidance
    return images, labels, info


def _run_sweep(pipe, evaluator, plan, n, seed, grid, batch_size, folder, common, hints=None):
    from diffkit.eval.sweep import plot_sweep, run_sweep
    from diffkit.methods.controlnet import with_control
    from diffkit.methods.pipeline import cycle_labels
    from diffkit.runs.layout import write_json

    eta, spacing = grid
    folder = free_path(folder)
    labels, cond = cycle_labels(pipe.num_classes, n), None
    if hints is not None:
        from diffkit.methods.controlnet import hinted_batch

        labels, cond, _ = hinted_batch(pipe, hints, n)

    def sample(sampler: str, s: Setting):
        w = s.guidance
        tag = f"{sampler}-{s.steps}" + (f" w={w:g}" if w is not None else "")
        steered = pipe
        if s.control_scale is not None:
            tag += f" control={s.control_scale:g}"
            steered = with_control(pipe, replace(pipe.model.control, scale=s.control_scale))
        with console.steps(tag, progress_total(sampler, s.steps, n, batch_size)) as advance:
            given = {"eta": eta, "spacing": spacing}
            options = {k: v for k, v in given.items() if k in pipe.reads(sampler) and v is not None}
            result = steered.sample(n, sampler=sampler, steps=s.steps, seed=seed, **options,
                                    batch_size=batch_size, on_step=advance, labels=labels,
                                    cond=cond, guidance=1.0 if w is None else w)  # fmt: skip
        return result.images, labels

    def acc(m: dict) -> str:
        return f"{m['class_accuracy']['all']:.3f}" if "class_accuracy" in m else "-"

    def report(p) -> None:
        w = f" w={p.guidance:g}" if p.guidance is not None else ""
        w += f" control={p.control_scale:g}" if p.control_scale is not None else ""
        f1 = f"  edge F1 {p.metrics['edges']['f1']:.3f}" if "edges" in p.metrics else ""
        console.info(f"{p.sampler:>5} {p.steps:>5} steps{w}: FID {p.metrics['fid']:8.3f}  "
                     f"KID {p.metrics['kid']:9.4g}  acc {acc(p.metrics)}{f1}  "
                     f"{p.wall_seconds:8.1f} s")  # fmt: skip

    floor = evaluator.floor(n)
    console.info(f"real floor at n={n}: FID {floor['fid']:.3f}")
    score = _scorer(evaluator, pipe, hints)
    from diffkit.data.registry import class_names, class_names_of

    names = (class_names_of(evaluator.data) if evaluator.data is not None
             else class_names(evaluator.dataset))  # fmt: skip
    points = run_sweep(sample, score, plan.samplers, plan.settings, folder,
                       class_names=names, on_point=report)  # fmt: skip
    write_json(folder / "sweep.json",
               common | {"n": n, "eta": eta, "spacing": spacing, "swept": plan.key, "floor": floor,
                         "points": [p.as_dict() for p in points]})  # fmt: skip
    plot_sweep(points, floor["fid"], folder / "sweep.png", key=plan.key,
               run=source_name(Path(common["source"])), features=common["features"],
               feature_sha256=common["feature_sha256"])  # fmt: skip
    edges = hints is not None
    rows = [
        [p.sampler, p.steps, "-" if p.guidance is None else f"{p.guidance:g}",
         *([f"{p.control_scale:g}", f"{p.metrics['edges']['f1']:.3f}"] if edges else []),
         f"{p.metrics['fid']:.3f}", f"{p.metrics['kid']:.4g}", f"{p.metrics['is']:.3f}",
         f"{p.metrics['precision']:.3f}", f"{p.metrics['recall']:.3f}", acc(p.metrics),
         f"{p.wall_seconds:.2f}", f"{p.ms_per_image:.2f}"]
        for p in points
    ]  # fmt: skip
    rows.append(["real floor", "-", "-", *(["-", "-"] if edges else []), f"{floor['fid']:.3f}",
                 f"{floor['kid']:.4g}", f"{floor['is']:.3f}", f"{floor['precision']:.3f}",
                 f"{floor['recall']:.3f}", "-", "-", "-"])  # fmt: skip
    console.table(
        f"sweep: {n} images per point vs {evaluator.dataset} test",
        ["sampler", "steps", "w", *(["control", "edge F1"] if edges else []), "FID", "KID",
         "IS", "precision", "recall", "class acc", "seconds", "ms/img"],
        rows,
    )  # fmt: skip
    console.out.print(str(folder))
