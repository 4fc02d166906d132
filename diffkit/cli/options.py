"""Options shared by several commands, declared once as ``Annotated`` types."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from diffkit.config.settings import Settings

ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="TOML, YAML or JSON file with run settings.", show_default=False),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        help="Folder holding <dataset>/ files (env DIFFKIT_DATA_DIR).", show_default=False
    ),
]
RunsDir = Annotated[
    Path | None,
    typer.Option(
        help="Where run folders go (env DIFFKIT_RUNS_DIR; default ./runs).", show_default=False
    ),
]
Device = Annotated[
    Literal["auto", "cpu", "cuda"] | None,
    typer.Option(help="Hardware (env DIFFKIT_DEVICE; default auto).", show_default=False),
]


def in_range(low: float | None = None, high: float | None = None):
    """An option callback for floats: finite and within [low, high]. Typer's own min/max
    let nan through (every comparison with it is false) and name the wrong bound."""

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        too_low = low is not None and value < low
        too_high = high is not None and value > high
        if not math.isfinite(value) or too_low or too_high:
            bounds = [f"{op} {b:g}" for op, b in ((">=", low), ("<=", high)) if b is not None]
            raise typer.BadParameter(f"{value} is not a finite number {' and '.join(bounds)}")
        return value

    return check


SEED_MAX = 2**63 - 2  # torch generators take 64-bit seeds; samplers also use seed + 1


def _check_seed(value: int | None) -> int | None:
    # A callback, not min/max: Typer would print the 19-digit bound in every --help.
    if value is not None and not 0 <= value <= SEED_MAX:
        raise typer.BadParameter(f"{value} is not in 0..{SEED_MAX}")
    return value


Seed = Annotated[
    int | None,
    typer.Option(help="Random seed (0 .. 2^63 - 2).", show_default=False, callback=_check_seed),
]
# fp32 arithmetic cannot resolve a relative error much below 1e-7: tighter tolerances make
# the adaptive solver's step size underflow instead of giving better samples.
Rtol = Annotated[
    float,
    typer.Option(help="dopri5 relative tolerance (1e-6 .. 1).", callback=in_range(1e-6, 1.0)),
]
Atol = Annotated[
    float,
    typer.Option(help="dopri5 absolute tolerance (1e-9 .. 1).", callback=in_range(1e-9, 1.0)),
]
SpacingOpt = Annotated[
    Literal["leading", "trailing", "linspace", "karras"] | None,
    typer.Option(
        "--spacing",
        help="DDPM timestep grid for fewer steps than T (default: the model's; trailing for "
        "diffkit runs, the scheduler's for diffusers models); karras: Karras et al. 2022's "
        "rho = 7 noise levels, rounded to timesteps.",
        show_default=False,
    ),
]
Eta = Annotated[
    float,
    typer.Option(
        help="DDIM noise scale (0 = deterministic, 1 = DDPM-like).", callback=in_range(0.0)
    ),
]
Guidance = Annotated[
    float,
    typer.Option(
        help="Classifier-free guidance scale w for class-conditional models (1 = plain "
        "conditional, 0 = unconditional).",
        callback=in_range(0.0),
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option("--overwrite", help="Replace an existing --out folder (default: refuse)."),
]
NoEma = Annotated[bool, typer.Option("--no-ema", help="Use raw, not EMA, weights.")]
FeatureNet = Annotated[
    Literal["classifier", "inception", "tf-inception"],
    typer.Option(
        "--features",
        metavar="NET",
        help="Feature network for the metrics: classifier (diffkit's), inception (local "
        "torchvision weights) or tf-inception (the TF-Inception of published FIDs, through "
        "torch-fidelity: the fid extra; local weights only).",
    ),
]
ClassifierPath = Annotated[
    Path | None,
    typer.Option(
        help="Classifier run or file, used even below the accuracy bar (with a warning); "
        "default: the most accurate qualified one for the dataset in RUNS_DIR.",
        show_default=False,
    ),
]
TFInceptionWeights = Annotated[
    Path | None,
    typer.Option(
        help="torch-fidelity's TF-Inception .pth for --features tf-inception (env "
        "DIFFKIT_TF_INCEPTION_WEIGHTS; default: torch hub cache). Never downloaded.",
        show_default=False,
    ),
]
Lpips = Annotated[
    bool,
    typer.Option(
        "--lpips",
        help="Also score LPIPS: the samples' diversity (mean distance of random pairs), or "
        "for a VAE run the reconstruction distance (the lpips extra).",
    ),
]
LpipsNet = Annotated[Literal["alex", "vgg"], typer.Option("--lpips-net", help="LPIPS backbone.")]
LpipsWeights = Annotated[
    Path | None,
    typer.Option(
        help="torchvision's ImageNet backbone .pth for --lpips (env DIFFKIT_LPIPS_WEIGHTS; "
        "default: torch hub cache). Never downloaded.",
        show_default=False,
    ),
]


PrintConfig = Annotated[
    bool,
    typer.Option(
        "--print-config",
        help="Print the fully resolved config as TOML (for --config) and exit; nothing is written.",
    ),
]
Loggers = Annotated[
    list[str] | None,
    typer.Option(
        "--logger",
        help="Also log to tensorboard (RUN/tb), wandb (RUN/wandb, offline unless WANDB_MODE "
        "is set) or csv (RUN/metrics.csv); repeatable or comma separated (default: none).",
        show_default=False,
    ),
]
Compile = Annotated[
    bool | None,
    typer.Option(
        "--compile",
        help="torch.compile the network (env DIFFKIT_COMPILE); if compiling fails, a warning "
        "and eager execution.",
        show_default=False,
    ),
]
GradAccum = Annotated[
    int | None,
    typer.Option(
        help="Micro-batches per step: each batch is split into this many and their "
        "gradients summed before the step (less memory, the same --batch-size per step; "
        "default 1). Random draws are per micro-batch: the same training in distribution, "
        "not bit for bit.",
        show_default=False,
    ),
]


def machine_settings(
    data_dir: Path | None,
    runs_dir: Path | None,
    device: str | None,
    compile: bool | None = None,
    *,
    computes: bool = True,
) -> Settings:
    """The machine settings: env ``DIFFKIT_*`` overridden by the flags that were given.

    This is the CLI's edge, so the process-wide ones are applied here, once: the thread
    count (``DIFFKIT_THREADS``). Library functions never change global torch state."""
    from pydantic import ValidationError

    from diffkit.config.resolve import ConfigError, format_validation_error
    from diffkit.config.settings import Settings

    overrides = {"data_dir": data_dir, "runs_dir": runs_dir, "device": device,
                 "compile": compile}  # fmt: skip
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    from diffkit.cli import console
    from diffkit.config import run
    from diffkit.config.resolve import env_names, unknown_env

    configs = (run.DDPMRunConfig, run.FlowRunConfig, run.ClassifierRunConfig, run.VAERunConfig,
               run.ControlNetRunConfig, run.DenoiserRunConfig, run.PairsConfig)  # fmt: skip
    for line in unknown_env(env_names(configs, Settings)):
        console.warning(line)
    if computes:  # `diffkit runs` only reads files: no torch for it
        _set_threads(settings.threads)
    return settings


def _set_threads(threads: int | None) -> None:
    """torch's CPU threads: DIFFKIT_THREADS, else the cores this process may use. torch
    itself counts the host's cores, which oversubscribes a container given fewer."""
    import torch

    from diffkit.resources import available_cpus

    cores = available_cpus()
    if threads is None and torch.get_num_threads() > cores:
        torch.set_num_threads(cores)
    elif threads is not None:
        torch.set_num_threads(threads)


CacheBranch = Annotated[
    int,
    typer.Option(
        help="DeepCache: skip connections kept in the shallow branch (1 = shallowest, fastest).",
        min=1,
    ),
]
CacheSchedule = Annotated[
    Literal["uniform", "quadratic"],
    typer.Option(
        help="DeepCache: a full evaluation every N calls, or quadratic around --cache-center."
    ),
]
CacheCenter = Annotated[
    float,
    typer.Option(
        help="DeepCache quadratic schedule: where full evaluations are densest, as a fraction "
        "of the trajectory (0 = first step).",
        callback=in_range(0.0, 1.0),
    ),
]
CacheMode = Annotated[
    Literal["reuse", "linear"],
    typer.Option(help="DeepCache: reuse the last deep feature, or extrapolate from the last two."),
]


HintSpec = Annotated[
    str | None,
    typer.Option(
        "--hint",
        help="ControlNet runs: the hint, an image file, a folder of images or dataset items "
        "DATASET:SPLIT[:A..B] (mnist:test:0..63); edge maps are made from them as in training.",
        show_default=False,
    ),
]
HintIsEdges = Annotated[
    bool,
    typer.Option("--hint-is-edges", help="The --hint files are edge maps already (grayscale)."),
]
ControlScale = Annotated[
    float,
    typer.Option(help="ControlNet residual scale (0 = the base model).", callback=in_range(0.0)),
]
ControlStart = Annotated[
    float,
    typer.Option(
        help="ControlNet acts from this fraction of the way from noise to data...",
        callback=in_range(0.0, 1.0),
    ),
]
ControlEnd = Annotated[
    float,
    typer.Option(help="...to this one.", callback=in_range(0.0, 1.0)),
]
GuessMode = Annotated[
    bool,
    typer.Option(
        "--guess-mode",
        help="ControlNet guess mode: residuals weighted 0.1 (shallow) to 1 (middle); with "
        "guidance only the conditional half sees the hint.",
    ),
]
