"""``diffkit sample RUN_OR_CHECKPOINT``: draw images from a trained model."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Literal

import typer

from diffkit.app.common import hinted, model_class_names, parse_classes, progress_total
from diffkit.cli import console
from diffkit.cli.choices import sampler_help, sampler_names
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.options import (
    Atol,
    CacheBranch,
    CacheCenter,
    CacheMode,
    CacheSchedule,
    Compile,
    ControlEnd,
    ControlScale,
    ControlStart,
    DataDir,
    Device,
    Eta,
    GuessMode,
    Guidance,
    HintIsEdges,
    HintSpec,
    NoEma,
    Overwrite,
    Rtol,
    Seed,
    SpacingOpt,
    cache_config,
    machine_settings,
)


def default_out(source: Path, name: str) -> Path:
    """``<run>/samples/<name>`` for a run or a file inside one, else ``./samples/<name>``;
    a numeric suffix keeps earlier outputs from being overwritten."""
    from diffkit.runs.layout import run_folder_of

    run = run_folder_of(source)
    base = (run if (run / "config.json").is_file() else Path.cwd()) / "samples" / name
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def sample_labels(
    pipe, classes: list[str], grid_per_class: bool, n: int | None
) -> tuple[object, int, int | None]:
    """(labels (n,) or None, n, grid columns or None for the default) for the requested
    classes."""
    import torch

    if not classes and not grid_per_class:
        return None, n or 64, None
    k = pipe.num_classes
    dataset = pipe.config.data.dataset if pipe.config is not None else "this model"
    picked = parse_classes(classes or ["all"], dataset, k, model_class_names(pipe))
    if grid_per_class:  # n images of each class (default 10), class by class
        per = n or 10
        labels = torch.tensor(picked).repeat_interleave(per)
        return labels, labels.numel(), None  # the grid: see class_grid_options
    n = n or 64
    labels = torch.tensor(picked)[torch.arange(n) % len(picked)]
    return labels, n, None


def class_grid_options(pipe, labels) -> dict:
    """SampleWriter's options for a class grid: one column per requested class, headed by
    its name, as the training previews are, with as many of each class as fit in
    GRID_MAX images (the shards still hold all of them)."""
    from diffkit.runs.samples import GRID_MAX

    k = len(set(labels.tolist()))
    per = labels.numel() // k
    return {"class_names": model_class_names(pipe), "grid_rows": min(per, max(1, GRID_MAX // k))}


@handle_errors
def sample(
    source: Annotated[
        Path,
        typer.Argument(
            help="Run folder, .safetensors checkpoint, a saved diffusers DDPM/DDIM pipeline "
            "folder, or hf:ORG/NAME (the Hugging Face cache; needs the diffusers extra).",
            show_default=False,
        ),
    ],
    sampler: Annotated[
        sampler_names() | None,
        typer.Option(
            "--sampler",
            "--solver",
            help=sampler_help(),
            show_default=False,
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Steps (default: T for ddpm, 50 otherwise; a distilled flow's own k).",
            show_default=False,
        ),
    ] = None,
    rtol: Rtol = 1e-3,
    atol: Atol = 1e-3,
    eta: Eta = 0.0,
    spacing: SpacingOpt = None,
    variance: Annotated[
        Literal["fixed_small", "fixed_large", "learned_range"] | None,
        typer.Option(
            help="DDPM reverse variance (default: the model's; fixed_small for diffkit runs, "
            "learned_range for a network that learned it).",
            show_default=False,
        ),
    ] = None,
    n: Annotated[
        int | None,
        typer.Option(
            "-n",
            "--num-images",
            help="Number of images (64), or per class with --grid-per-class (10).",
            show_default=False,
        ),
    ] = None,
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            help="Class(es) to draw: index, range (0..9), name or 'all'; repeatable or comma "
            "separated; images cycle through them.",
            show_default=False,
        ),
    ] = None,
    guidance: Guidance = 1.0,
    grid_per_class: Annotated[
        bool,
        typer.Option(
            "--grid-per-class",
            help="grid.png with one column per class, its name above it (with --class: "
            "those classes).",
        ),
    ] = False,
    seed: Seed = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", min=1)] = 256,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder (default RUN/samples/SAMPLER-STEPS-seedSEED, never overwritten).",
            show_default=False,
        ),
    ] = None,
    overwrite: Overwrite = False,
    cache_interval: Annotated[
        int,
        typer.Option(help="DeepCache: run the whole UNet every N network calls (1 = off).", min=1),
    ] = 1,
    cache_branch: CacheBranch = 1,
    cache_schedule: CacheSchedule = "uniform",
    cache_center: CacheCenter = 0.0,
    cache_mode: CacheMode = "linear",
    hint: HintSpec = None,
    hint_is_edges: HintIsEdges = False,
    control_scale: ControlScale = 1.0,
    control_start: ControlStart = 0.0,
    control_end: ControlEnd = 1.0,
    guess_mode: GuessMode = False,
    data_dir: DataDir = None,
    device: Device = None,
    no_ema: NoEma = False,
    compile_net: Compile = None,
) -> None:
    """Sample images: writes grid.png (up to 256), samples-NNNNN.safetensors shards and
    sample.json; the folder appears when it is complete. A ControlNet run samples with
    --hint: one image per hint by default, hints cycling when -n is larger."""
    from contextlib import nullcontext

    import torch

    from diffkit.accel.deepcache import DeepCache
    from diffkit.methods.load import load_pipeline
    from diffkit.runs.layout import check_writable
    from diffkit.runs.samples import SampleWriter
    from diffkit.samplers.registry import sampler_spec
    from diffkit.training.hardware import resolve_device

    if n is not None and n < 1:
        raise UsageError("-n must be at least 1")
    settings = machine_settings(data_dir, None, device, compile_net)
    if settings.compile and cache_interval > 1:
        raise UsageError("--compile and --cache-interval > 1 exclude each other: DeepCache "
                         "changes the network from call to call")  # fmt: skip
    dev = resolve_device(settings.device)
    pipe = load_pipeline(source, dev, use_ema=not no_ema)
    control = {"scale": control_scale, "start": control_start, "end": control_end,
               "guess": guess_mode}  # fmt: skip
    pipe, hints = hinted(pipe, hint, hint_is_edges, control, settings.data_dir)
    if hints is not None:
        n = n or len(hints)
    if guidance != 1.0 and not classes and not grid_per_class and hints is None:
        classes = ["all"]
    labels, n, nrow = sample_labels(pipe, classes or [], grid_per_class, n)
    cond = None
    if hints is not None:
        from diffkit.methods.controlnet import hinted_batch

        labels, cond, _ = hinted_batch(pipe, hints, n, labels)
    sampler = sampler or pipe.DEFAULT_SAMPLER
    try:
        steps = pipe.check(sampler, steps)
    except ValueError as exc:
        raise UsageError(f"--sampler/--steps: {exc}") from None
    options = {"eta": eta, "spacing": spacing, "variance": variance, "rtol": rtol, "atol": atol}
    try:
        pipe.options(sampler, options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    cache, deep_cache = None, None
    if cache_interval > 1:
        cache = cache_config(cache_interval, cache_branch, cache_schedule, cache_center,
                             cache_mode)  # fmt: skip
        try:
            deep_cache = DeepCache.of(pipe, cache, sampler, steps)  # refused now, if at all
        except ValueError as exc:
            raise UsageError(f"--cache-*: {exc}") from None
    seed = 0 if seed is None else seed
    spec = sampler_spec(sampler)
    tag = spec.tag(steps)
    tag += f"-eta{eta:g}" if "eta" in spec.options and eta else ""
    tag += f"-w{guidance:g}" if labels is not None or guidance != 1.0 else ""
    tag += f"-cs{control_scale:g}" if hints is not None and control_scale != 1.0 else ""
    tag += f"-cache{cache_interval}" if cache is not None else ""
    out = out or default_out(source, f"{tag}-seed{seed}")
    _check_out(out, overwrite)
    _check_room(pipe, n, batch_size, out)
    check_writable(out.parent)
    pipe = pipe.compiled(settings.compile_with, console.warning)

    grid = class_grid_options(pipe, labels) if grid_per_class else {}
    writer = SampleWriter(out, overwrite=overwrite, **grid)
    nfes: list[int] = []
    try:
        total = progress_total(sampler, steps, n, batch_size)
        with console.steps(f"{tag}, {n} images", total) as advance, deep_cache or nullcontext():
            start = time.perf_counter()
            for batch in pipe.sample_batches(
                n, sampler=sampler, steps=steps, **options, seed=seed, batch_size=batch_size,
                labels=labels, cond=cond, guidance=guidance, on_step=advance,
                on_batch_start=deep_cache.reset if deep_cache is not None else None,
            ):  # fmt: skip
                writer.add(batch.images, batch.labels)
                nfes.append(batch.nfe)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
        nfe = sum(nfes) / len(nfes)
        full_nfe = deep_cache.mean_full if deep_cache is not None else nfe
        meta = {
            "source": str(source),
            # what the images imitate (a diffusers model does not say)
            "data": pipe.config.data.model_dump(mode="json") if pipe.config else None,
            "sampler": sampler,
            "steps": None if spec.adaptive else steps,
            "nfe": nfe,
            "full_nfe": full_nfe,
            "cache": asdict(cache) if cache is not None else None,
            "rtol": rtol if "rtol" in spec.options else None,
            "atol": atol if "atol" in spec.options else None,
            "eta": eta,
            "spacing": spacing or getattr(pipe.model, "spacing", None),
            "variance": variance or getattr(pipe.model, "variance", None),
            "n": n,
            "classes": sorted(set(labels.tolist())) if labels is not None else None,
            "guidance": guidance if labels is not None or hints is not None else None,
            "hint": hint,
            "control": {**control, "hint_is_edges": hint_is_edges} if hints is not None else None,
            "seed": seed,
            "ema": not no_ema if pipe.config is not None else None,  # diffusers: one set
            "device": str(dev),
            "compiled": pipe.net.active if settings.compile else None,  # False: fell back
            "batch_size": batch_size,
            "wall_seconds": wall,
            "ms_per_image": 1000 * wall / n,
        }
        writer.publish(meta, nrow=nrow)
    except BaseException:
        writer.discard()  # nothing half-written is left; an older --out folder is intact
        raise
    what = f"{nfe:g} evaluations" if spec.adaptive else f"{steps} steps"
    if cache is not None:
        what += f", DeepCache {full_nfe:g} full"
    console.info(
        f"{n} images, {sampler} {what}: {wall:.2f} s ({1000 * wall / n:.1f} ms/image) on {dev}"
    )
    console.out.print(str(out))


def _check_out(out: Path, overwrite: bool) -> None:
    """An existing --out is replaced only when asked to, and only if it is a samples
    folder (never a run folder or some other file)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if not overwrite:
        raise UsageError(f"--out {out} already exists; pass --overwrite to replace it, or "
                         "leave --out unset for a fresh folder")  # fmt: skip
    if any(out.iterdir()) and not (out / "sample.json").is_file():
        raise UsageError(f"--out {out} is not a samples folder (no sample.json); "
                         "--overwrite replaces only samples folders")  # fmt: skip


def _check_room(pipe, n: int, batch_size: int, out: Path) -> None:
    """Refuse a request whose output cannot fit on disk, or one batch of it in memory."""
    import math

    from diffkit.data.registry import image_shape
    from diffkit.resources import check_disk, check_memory

    if pipe.config is not None:
        channels, size = image_shape(pipe.config.data)
        per_image = 4 * channels * size * size  # float32 on disk and in memory
    else:  # a foreign model samples pixels
        per_image = 4 * math.prod(pipe.model.sample_shape)
    per_latent = 4 * math.prod(pipe.model.sample_shape)
    check_disk(n * per_image, out.parent, f"-n {n} ({per_image} bytes per image)")
    # One batch: noise, the sampler's few working copies and the decoded images.
    check_memory(min(n, batch_size) * (8 * per_latent + 2 * per_image),
                 f"--batch-size {batch_size}")  # fmt: skip
