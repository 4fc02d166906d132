"""``diffkit sample RUN_OR_CHECKPOINT``: draw images from a trained model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

import typer

from diffkit.cli import console
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.options import Device, Seed, machine_settings


def default_out(source: Path, name: str) -> Path:
    """``<run>/samples/<name>`` for a run or a file inside one, else ``./samples/<name>``;
    a numeric suffix keeps earlier outputs from being overwritten."""
    run = source if source.is_dir() else source.parent.parent
    base = (run if (run / "config.json").is_file() else Path.cwd()) / "samples" / name
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


@handle_errors
def sample(
    source: Annotated[
        Path, typer.Argument(help="Run folder or .safetensors checkpoint.", show_default=False)
    ],
    sampler: Annotated[Literal["ddpm", "ddim"], typer.Option(help="Sampler.")] = "ddim",
    steps: Annotated[
        int | None,
        typer.Option(
            help="Denoising steps (default: T for ddpm, 50 for ddim).", show_default=False
        ),
    ] = None,
    eta: Annotated[float, typer.Option(help="DDIM noise scale (0 = deterministic).")] = 0.0,
    spacing: Annotated[
        Literal["leading", "trailing", "linspace"],
        typer.Option(help="Timestep spacing for fewer steps than T."),
    ] = "trailing",
    variance: Annotated[
        Literal["fixed_small", "fixed_large"], typer.Option(help="DDPM reverse variance.")
    ] = "fixed_small",
    n: Annotated[int, typer.Option("-n", "--n", help="Number of images.")] = 64,
    seed: Seed = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder (default RUN/samples/SAMPLER-STEPS-seedSEED, never overwritten).",
            show_default=False,
        ),
    ] = None,
    device: Device = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Use raw, not EMA, weights.")] = False,
) -> None:
    """Sample images: writes grid.png, samples.safetensors and sample.json."""
    import torch
    from safetensors.torch import save

    from diffkit.methods.ddpm import load_pipeline
    from diffkit.runs.layout import atomic_write_bytes, write_json
    from diffkit.runs.plots import save_grid
    from diffkit.training.hardware import resolve_device

    if n < 1 or batch_size < 1:
        raise UsageError("-n and --batch-size must be at least 1")
    if eta < 0:
        raise UsageError("--eta must be >= 0")
    settings = machine_settings(None, None, device)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    dev = resolve_device(settings.device)
    pipe = load_pipeline(source, dev, use_ema=not no_ema)
    T = pipe.config.diffusion.num_steps
    steps = steps or (T if sampler == "ddpm" else 50)
    if not 1 <= steps <= T:
        raise UsageError(f"--steps must be between 1 and {T} (the model's training steps)")
    seed = 0 if seed is None else seed
    tag = f"{sampler}-{steps}" + (f"-eta{eta:g}" if sampler == "ddim" and eta else "")
    out = out or default_out(source, f"{tag}-seed{seed}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")

    start = time.perf_counter()
    images = pipe.sample(
        n,
        sampler=sampler,
        steps=steps,
        eta=eta,
        spacing=spacing,
        variance=variance,
        seed=seed,
        batch_size=batch_size,
    )
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    save_grid(images, out / "grid.png")
    atomic_write_bytes(out / "samples.safetensors", save({"samples": images.contiguous()}))
    write_json(
        out / "sample.json",
        {
            "source": str(source),
            "data": pipe.config.data.model_dump(mode="json"),  # what the images imitate
            "sampler": sampler,
            "steps": steps,
            "eta": eta,
            "spacing": spacing,
            "variance": variance,
            "n": n,
            "seed": seed,
            "ema": not no_ema,
            "device": str(dev),
            "batch_size": batch_size,
            "wall_seconds": wall,
            "ms_per_image": 1000 * wall / n,
        },
    )
    console.info(
        f"{n} images, {sampler} {steps} steps: {wall:.2f} s "
        f"({1000 * wall / n:.1f} ms/image) on {dev}"
    )
    console.out.print(str(out))
