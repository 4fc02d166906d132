"""``diffkit sample RUN_OR_CHECKPOINT``: draw images from a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

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
    machine_settings,
)

Source = Annotated[
    Path,
    typer.Argument(
        help="Run folder, .safetensors checkpoint, a saved diffusers DDPM/DDIM pipeline "
        "folder, or hf:ORG/NAME (the Hugging Face cache; needs the diffusers extra).",
        show_default=False,
    ),
]
Steps = Annotated[
    int | None,
    typer.Option(
        help="Steps (default: T for ddpm, 50 otherwise; a distilled flow's own k).",
        show_default=False,
    ),
]
Variance = Annotated[
    Literal["fixed_small", "fixed_large", "learned_range"] | None,
    typer.Option(
        help="DDPM reverse variance (default: the model's; fixed_small for diffkit runs, "
        "learned_range for a network that learned it).",
        show_default=False,
    ),
]
NumImages = Annotated[
    int | None,
    typer.Option(
        "-n",
        "--num-images",
        help="Number of images (64), or per class with --grid-per-class (10).",
        show_default=False,
    ),
]
Classes = Annotated[
    list[str] | None,
    typer.Option(
        "--class",
        help="Class(es) to draw: index, range (0..9), name or 'all'; repeatable or comma "
        "separated; images cycle through them.",
        show_default=False,
    ),
]
GridPerClass = Annotated[
    bool,
    typer.Option(
        "--grid-per-class",
        help="grid.png with one column per class, its name above it (with --class: those classes).",
    ),
]
Out = Annotated[
    Path | None,
    typer.Option(
        help="Output folder (default RUN/samples/SAMPLER-STEPS-seedSEED, never overwritten).",
        show_default=False,
    ),
]
CacheInterval = Annotated[
    int,
    typer.Option(help="DeepCache: run the whole UNet every N network calls (1 = off).", min=1),
]
BatchSize = Annotated[int, typer.Option(help="Images per forward pass.", min=1)]


@handle_errors
def sample(
    source: Source,
    sampler: Annotated[
        sampler_names() | None,
        typer.Option(
            "--sampler",
            "--solver",
            help=sampler_help(),
            show_default=False,
        ),
    ] = None,
    steps: Steps = None,
    rtol: Rtol = 1e-3,
    atol: Atol = 1e-3,
    eta: Eta = 0.0,
    spacing: SpacingOpt = None,
    variance: Variance = None,
    n: NumImages = None,
    classes: Classes = None,
    guidance: Guidance = 1.0,
    grid_per_class: GridPerClass = False,
    seed: Seed = None,
    batch_size: BatchSize = 256,
    out: Out = None,
    overwrite: Overwrite = False,
    cache_interval: CacheInterval = 1,
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
    from diffkit.app.common import CacheRequest, ControlRequest
    from diffkit.app.sample import SampleRequest, Sampling
    from diffkit.app.sample import sample as draw

    if n is not None and n < 1:
        raise UsageError("-n must be at least 1")
    settings = machine_settings(data_dir, None, device, compile_net)
    request = SampleRequest(
        source, Sampling(sampler, steps, eta, spacing, variance, rtol, atol), n,
        tuple(classes or ()), guidance, grid_per_class, seed, batch_size, out, overwrite,
        CacheRequest(cache_interval, cache_branch, cache_schedule, cache_center, cache_mode),
        ControlRequest(hint, hint_is_edges, control_scale, control_start, control_end,
                       guess_mode),
        use_ema=not no_ema,
    )  # fmt: skip
    result = draw(request, settings, report=console)
    console.info(result.summary)
    console.out.print(str(result.folder))
