"""``diffkit train ...``: parse flags, resolve the config, hand over to the method."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from diffkit.cli import console
from diffkit.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, UsageError, handle_errors
from diffkit.cli.options import ConfigFile, DataDir, Device, RunsDir, Seed, machine_settings
from diffkit.config import DDPMRunConfig, resolve_run_config
from diffkit.config.resolve import validate
from diffkit.runs.layout import RunDir

app = typer.Typer(
    help="Train a model; each run writes a self-describing run folder.", no_args_is_help=True
)

# Flags that may accompany --resume: they extend or relocate a run without changing it.
RESUMABLE = {"train.epochs", "train.max_steps"}


def _resume_config(run_path: Path, flags: dict) -> tuple[RunDir, DDPMRunConfig]:
    import json

    run = RunDir(run_path)
    if not run.config.is_file() or not run.last_checkpoint.is_file():
        raise UsageError(
            f"cannot resume {run_path}: not a run folder with checkpoints/last.safetensors"
        )
    changed = sorted(k for k, v in flags.items() if v is not None and k not in RESUMABLE)
    if changed:
        raise UsageError(
            f"--resume continues a run as configured; cannot change {', '.join(changed)}"
        )
    try:
        stored = json.loads(run.config.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot resume {run_path}: unreadable config.json ({exc})") from None
    stored.setdefault("train", {}).update(
        {k.split(".")[1]: v for k, v in flags.items() if k in RESUMABLE and v is not None}
    )
    return run, validate(DDPMRunConfig, stored)


@app.command("ddpm")
@handle_errors
def ddpm(
    epochs: Annotated[
        int | None, typer.Option(help="Passes over the data.", show_default=False)
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Images per step per process.", show_default=False)
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Peak learning rate.", show_default=False)
    ] = None,
    preset: Annotated[
        Literal["tiny", "small", "default"] | None,
        typer.Option(
            help="tiny (tests) | small (2-core CPU, ~17 min) | default (the seeds' GPU model;"
            " used when no preset is given).",
            show_default=False,
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(help="mnist | fashion-mnist | cifar10 | folder:PATH.", show_default=False),
    ] = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    name: Annotated[
        str | None, typer.Option(help="Run name (folder suffix).", show_default=False)
    ] = None,
    config: ConfigFile = None,
    device: Device = None,
    precision: Annotated[
        Literal["auto", "fp32", "bf16", "fp16"] | None,
        typer.Option(
            help="auto = bf16 autocast where the hardware has native bf16.", show_default=False
        ),
    ] = None,
    seed: Seed = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps.", show_default=False)
    ] = None,
    limit_data: Annotated[
        int | None, typer.Option(help="Train on the first N images only.", show_default=False)
    ] = None,
    schedule: Annotated[
        Literal["linear", "cosine"] | None, typer.Option(help="Noise schedule.", show_default=False)
    ] = None,
    prediction: Annotated[
        Literal["eps", "x0", "v"] | None,
        typer.Option(help="What the network predicts.", show_default=False),
    ] = None,
    sample_every: Annotated[
        int | None,
        typer.Option(help="Preview grid every N epochs (0 = never).", show_default=False),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option(
            help="FID/KID of the EMA model every N epochs (0 = never).", show_default=False
        ),
    ] = None,
    eval_n: Annotated[
        int | None, typer.Option(help="Images per in-training evaluation.", show_default=False)
    ] = None,
    keep_best: Annotated[
        bool | None,
        typer.Option(
            "--keep-best",
            help="Keep checkpoints/best.safetensors by lowest FID.",
            show_default=False,
        ),
    ] = None,
    classifier: Annotated[
        Path | None,
        typer.Option(
            help="Feature classifier for --eval-every (default: newest for the "
            "dataset in RUNS_DIR).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue this run folder exactly where it stopped.", show_default=False),
    ] = None,
) -> None:
    """Train a pixel-space DDPM (UNet, eps/x0/v prediction) and write a run folder."""
    from diffkit.methods.ddpm import train_ddpm
    from diffkit.training.distributed import destroy, dist_from_env, init_process_group
    from diffkit.training.hardware import resolve_device

    flags = {
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.lr": lr,
        "preset": preset,
        "data.dataset": dataset,
        "name": name,
        "train.precision": precision,
        "train.seed": seed,
        "train.max_steps": max_steps,
        "data.limit": limit_data,
        "diffusion.schedule": schedule,
        "diffusion.prediction": prediction,
        "train.sample_every": sample_every,
        "train.eval_every": eval_every,
        "train.eval_n": eval_n,
        "train.keep_best": keep_best,
    }
    settings = machine_settings(data_dir, runs_dir, device)
    if resume is not None:
        if config is not None:
            raise UsageError("--config cannot be combined with --resume")
        run, cfg = _resume_config(resume, flags)
    else:
        run, cfg = None, resolve_run_config(DDPMRunConfig, flags, config)

    dist = dist_from_env()
    init_process_group(dist, resolve_device(settings.device, dist.local_rank))
    progress = console.TrainProgress(enabled=dist.is_main)
    try:
        run, result = train_ddpm(
            cfg,
            settings,
            resume=run,
            dist=dist,
            classifier=classifier,
            on_event=progress,
            on_run_dir=lambda r: console.info(f"run folder: {r.path}"),
        )
    finally:
        destroy()
    if not dist.is_main:
        return
    console.out.print(str(run.path))
    match result.reason:
        case "non_finite":
            console.error(
                f"loss became NaN/inf at step {result.step}; stopped, the last good "
                f"checkpoint is kept in {run.checkpoints}"
            )
            raise typer.Exit(EXIT_FAILED)
        case "interrupted":
            console.info(f"interrupted at step {result.step}; resume with --resume {run.path}")
            raise typer.Exit(EXIT_INTERRUPTED)
        case _:
            loss = f", loss {result.last_loss:.4f}" if result.last_loss is not None else ""
            console.info(
                f"{result.reason}: {result.step} steps, {result.epoch} epochs, "
                f"{result.images_per_sec:.0f} img/s{loss}"
            )


@app.command("classifier")
@handle_errors
def classifier(
    dataset: Annotated[
        str, typer.Option(help="mnist | fashion-mnist | cifar10 (labelled datasets).")
    ] = "mnist",
    epochs: Annotated[
        int | None, typer.Option(help="Passes over the data (recipe: 4).", show_default=False)
    ] = None,
    seed: Seed = None,
    limit_data: Annotated[
        int | None, typer.Option(help="Train on the first N images only.", show_default=False)
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps.", show_default=False)
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Run name (default: the dataset).", show_default=False)
    ] = None,
    config: ConfigFile = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
) -> None:
    """Train the CNN feature classifier used by `diffkit eval` (fixed recipe and seed)."""
    from diffkit.config.run import ClassifierRunConfig
    from diffkit.methods.classifier import train_classifier

    flags = {
        "data.dataset": dataset,
        "train.epochs": epochs,
        "train.seed": seed,
        "data.limit": limit_data,
        "train.max_steps": max_steps,
        "name": name or dataset.replace(":", "-").replace("/", "-")[:64],
    }
    settings = machine_settings(data_dir, runs_dir, device)
    cfg = resolve_run_config(ClassifierRunConfig, flags, config)
    progress = console.TrainProgress()
    res = train_classifier(
        cfg, settings, on_event=progress,
        on_run_dir=lambda r: console.info(f"run folder: {r.path}"),
    )  # fmt: skip
    console.out.print(str(res.run.path))
    if res.train.reason == "interrupted":
        console.info("interrupted; no classifier written (train it again, ~minutes)")
        raise typer.Exit(EXIT_INTERRUPTED)
    if res.train.reason == "non_finite":
        console.error(f"loss became NaN/inf at step {res.train.step}; no classifier written")
        raise typer.Exit(EXIT_FAILED)
    console.info(
        f"test accuracy {100 * res.test_accuracy:.2f} % after {res.train.step} steps "
        f"({res.train.elapsed:.0f} s, {res.train.images_per_sec:.0f} img/s); "
        f"sha256 {res.digest[:16]}"
    )
