"""``diffkit eval RUN_OR_SAMPLES``: FID / KID / IS / precision-recall against the test split."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from diffkit.cli import console
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.options import DataDir, Device, RunsDir, Seed, machine_settings

SAMPLERS = ("ddpm", "ddim")


def _is_checkpoint(path: Path) -> bool:
    """A run folder or a diffkit checkpoint file (as opposed to a samples file/folder)."""
    from safetensors import SafetensorError, safe_open

    from diffkit.runs.checkpoint import FORMAT

    if path.is_dir():
        return (path / "config.json").is_file() and not (path / "samples.safetensors").exists()
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("diffkit.format") == FORMAT
    except (SafetensorError, OSError):
        return False


def _dataset_of_samples(file: Path) -> tuple[str | None, dict]:
    """The dataset a samples folder was drawn for, via sample.json -> the run's config."""
    try:
        meta = json.loads((file.parent / "sample.json").read_text())
        src = Path(meta["source"])
        run = src if src.is_dir() else src.parent.parent
        cfg = json.loads((run / "config.json").read_text())
        return cfg["data"]["dataset"], cfg["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, {}


def _rows(metrics: dict[str, Any], floor: dict[str, Any] | None) -> list[list[str]]:
    def fmt(m: dict[str, Any] | None, key: str) -> str:
        if m is None or key not in m:
            return "-"
        if key in ("kid", "is"):
            scale = 1000 if key == "kid" else 1
            return f"{scale * m[key]:.3f} ± {scale * m[key + '_std']:.3f}"
        return f"{m[key]:.4f}" if key in ("precision", "recall") else f"{m[key]:.3f}"

    names = {"fid": "FID", "kid": "KID x 10^3", "is": "IS", "precision": "precision",
             "recall": "recall"}  # fmt: skip
    rows = [[label, fmt(metrics, k), fmt(floor, k)] for k, label in names.items()]
    for cls, acc in metrics.get("class_accuracy", {}).items():
        rows.append([f"class accuracy [{cls}]", f"{acc:.4f}", "-"])
    return rows


@handle_errors
def evaluate(
    source: Annotated[
        Path,
        typer.Argument(
            help="Run folder, checkpoint, or samples folder / samples.safetensors.",
            show_default=False,
        ),
    ],
    n: Annotated[int, typer.Option("-n", "--n", help="Images to generate and score.")] = 10000,
    sampler: Annotated[Literal["ddpm", "ddim"], typer.Option(help="Sampler for runs.")] = "ddim",
    steps: Annotated[
        int | None,
        typer.Option(help="Sampling steps (default: T for ddpm, 50 for ddim).", show_default=False),
    ] = None,
    eta: Annotated[float, typer.Option(help="DDIM noise scale.")] = 0.0,
    seed: Seed = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 500,
    features: Annotated[
        Literal["classifier", "inception"],
        typer.Option(help="Feature network: diffkit's classifier or local InceptionV3 weights."),
    ] = "classifier",
    classifier: Annotated[
        Path | None,
        typer.Option(
            help="Classifier run or file (default: newest for the dataset in RUNS_DIR).",
            show_default=False,
        ),
    ] = None,
    inception_weights: Annotated[
        Path | None,
        typer.Option(
            help="InceptionV3 .pth (env DIFFKIT_INCEPTION_WEIGHTS; default: torch hub cache).",
            show_default=False,
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(help="Dataset of a samples file without provenance.", show_default=False),
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            help="Sweep step counts, e.g. steps=1,2,5,10,20,50,100,1000.", show_default=False
        ),
    ] = None,
    samplers: Annotated[
        str, typer.Option(help="Samplers of a --sweep, comma separated.")
    ] = "ddpm,ddim",
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for results (default: SOURCE/eval).", show_default=False),
    ] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Use raw, not EMA, weights.")] = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
) -> None:
    """Score a model or saved samples: FID, KID, IS, precision/recall (+ class accuracy),
    beside the real-vs-real floor; results go to SOURCE/eval/<stamp>.json."""
    import torch

    from diffkit.eval.evaluate import MIN_SAMPLES, Evaluator, load_samples
    from diffkit.eval.features import load_extractor
    from diffkit.training.hardware import resolve_device

    if n < MIN_SAMPLES or batch_size < 1:
        raise UsageError(f"-n must be at least {MIN_SAMPLES} and --batch-size at least 1")
    if not source.exists():
        raise UsageError(f"no run, checkpoint or samples at {source}")
    settings = machine_settings(data_dir, runs_dir, device)
    if inception_weights is not None:
        settings = settings.model_copy(update={"inception_weights": inception_weights})
    if settings.threads:
        torch.set_num_threads(settings.threads)
    dev = resolve_device(settings.device)
    seed = 0 if seed is None else seed
    from diffkit.config.run import DataConfig

    pipe = images = labels = None
    if _is_checkpoint(source):
        from diffkit.methods.ddpm import load_pipeline

        pipe = load_pipeline(source, dev, use_ema=not no_ema)
        data_cfg = pipe.config.data
        run_dir = source if source.is_dir() else source.parent.parent
    else:
        if sweep:
            raise UsageError("--sweep needs a run or checkpoint, not saved samples")
        images, labels, file = load_samples(source)
        found, stored = _dataset_of_samples(file)
        name = dataset or found
        if name is None:
            raise UsageError(f"cannot tell which dataset {file} imitates; pass --dataset")
        data_cfg = DataConfig(**(stored if found == name else {"dataset": name}))
        run_dir = file.parent
        images, labels = images[:n], labels[:n] if labels is not None else None
    if dataset is not None and dataset != data_cfg.dataset:
        raise UsageError(f"--dataset {dataset} differs from the model's {data_cfg.dataset}")

    extractor = load_extractor(
        features, data_cfg.dataset, settings.runs_dir, dev,
        classifier=classifier, inception_weights=settings.inception_weights,
    )  # fmt: skip
    console.info(f"reference: {data_cfg.dataset} test split, {features} features "
                 f"(sha256 {extractor.digest[:12]})")  # fmt: skip
    evaluator = Evaluator(data_cfg.dataset, extractor, settings, data=data_cfg, seed=seed)
    out = out or run_dir / "eval"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    common = {
        "source": str(source), "dataset": data_cfg.dataset, "features": features,
        "feature_sha256": extractor.digest, "seed": seed, "device": str(dev),
        "created": datetime.now().isoformat(timespec="seconds"),
    }  # fmt: skip
    if sweep:
        _run_sweep(pipe, evaluator, sweep, samplers, n, seed, eta, batch_size, out, stamp, common)
        return
    if pipe is not None:
        images, gen_info = _generate(pipe, n, sampler, steps, eta, seed, batch_size)
        common |= gen_info
    n_scored = images.shape[0]
    if n_scored < MIN_SAMPLES:
        raise UsageError(f"{source} holds {n_scored} samples; need at least {MIN_SAMPLES}")
    console.info(f"scoring {n_scored} images ...")
    metrics = evaluator.score_images(images, labels)
    floor = evaluator.floor(n_scored)
    from diffkit.runs.layout import write_json

    path = _free(out / f"{stamp}.json")
    write_json(path, common | {"n": n_scored, "metrics": metrics, "floor": floor})
    title = f"{source.name}: {n_scored} images vs {data_cfg.dataset} test ({features})"
    console.table(title, ["metric", "samples", "real floor"], _rows(metrics, floor))
    console.out.print(str(path))


def _free(path: Path) -> Path:
    """``path`` or ``path`` with a numeric suffix, whichever does not exist yet."""
    candidate, i = path, 1
    while candidate.exists():
        candidate, i = path.with_name(f"{path.stem}-{i}{path.suffix}"), i + 1
    return candidate


def _check_steps(pipe, sampler: str, steps: int | None) -> int:
    T = pipe.config.diffusion.num_steps
    steps = steps or (T if sampler == "ddpm" else 50)
    if not 1 <= steps <= T:
        raise UsageError(f"steps must be between 1 and {T} (the model's training steps)")
    return steps


def _generate(pipe, n, sampler, steps, eta, seed, batch_size):
    import time

    steps = _check_steps(pipe, sampler, steps)
    console.info(f"sampling {n} images, {sampler} {steps} steps ...")
    start = time.perf_counter()
    images = pipe.sample(n, sampler=sampler, steps=steps, eta=eta, seed=seed,
                         batch_size=batch_size)  # fmt: skip
    wall = time.perf_counter() - start
    info = {"sampler": sampler, "steps": steps, "eta": eta, "sample_seconds": wall,
            "ms_per_image": 1000 * wall / n}  # fmt: skip
    return images, info


def _run_sweep(pipe, evaluator, spec, samplers, n, seed, eta, batch_size, out, stamp, common):
    from diffkit.eval.sweep import parse_steps, plot_sweep, run_sweep
    from diffkit.runs.layout import write_json

    try:
        steps_list = parse_steps(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    names = [s.strip() for s in samplers.split(",") if s.strip()]
    bad = [s for s in names if s not in SAMPLERS]
    if bad or not names:
        raise UsageError(f"--samplers: unknown {', '.join(bad) or '(none)'}; use ddpm,ddim")
    for s in steps_list:
        _check_steps(pipe, "ddim", s)
    folder = _free(out / f"{stamp}-sweep")

    def sample(sampler: str, steps: int):
        return pipe.sample(n, sampler=sampler, steps=steps, eta=eta, seed=seed,
                           batch_size=batch_size)  # fmt: skip

    def report(p) -> None:
        console.info(f"{p.sampler:>5} {p.steps:>5} steps: FID {p.metrics['fid']:8.3f}  "
                     f"KID {1000 * p.metrics['kid']:7.3f}e-3  {p.wall_seconds:8.1f} s")  # fmt: skip

    floor = evaluator.floor(n)
    console.info(f"real floor at n={n}: FID {floor['fid']:.3f}")
    points = run_sweep(sample, evaluator, names, steps_list, folder, on_point=report)
    write_json(folder / "sweep.json",
               common | {"n": n, "eta": eta, "floor": floor,
                         "points": [p.as_dict() for p in points]})  # fmt: skip
    plot_sweep(points, floor["fid"], folder / "sweep.png")
    rows = [
        [p.sampler, p.steps, f"{p.metrics['fid']:.3f}", f"{1000 * p.metrics['kid']:.3f}",
         f"{p.metrics['is']:.3f}", f"{p.metrics['precision']:.3f}", f"{p.metrics['recall']:.3f}",
         f"{p.wall_seconds:.2f}", f"{p.ms_per_image:.2f}"]
        for p in points
    ]  # fmt: skip
    rows.append(["real floor", "-", f"{floor['fid']:.3f}", f"{1000 * floor['kid']:.3f}",
                 f"{floor['is']:.3f}", f"{floor['precision']:.3f}", f"{floor['recall']:.3f}",
                 "-", "-"])  # fmt: skip
    console.table(
        f"sweep: {n} images per point vs {evaluator.dataset} test",
        ["sampler", "steps", "FID", "KIDx10^3", "IS", "precision", "recall", "seconds", "ms/img"],
        rows,
    )
    console.out.print(str(folder))
