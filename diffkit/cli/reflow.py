"""``diffkit reflow make-pairs|train|straightness``: straighten a rectified flow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from diffkit.cli import console
from diffkit.cli.choices import sampler_names
from diffkit.cli.errors import UsageError, handle_errors, interrupted
from diffkit.cli.flags import (
    BATCH_SIZE,
    CLOSING,
    DATA_DIR,
    DEVICE,
    EPOCHS,
    GRAD_ACCUM,
    LR,
    MAX_STEPS,
    MODEL,
    NAME,
    PREVIEW,
    RESUME,
    RUNS_DIR,
    SAMPLE_EVERY,
    SAMPLE_EVERY_STEPS,
    SEED,
    Flag,
    config_flags,
    option,
    takes,
)
from diffkit.cli.options import Device, Guidance, RunsDir, Seed, machine_settings

app = typer.Typer(
    help="Reflow: pairs from a flow's ODE, a straighter flow trained on them, and S.",
    no_args_is_help=True,
)


def _opt(help: str, *names: str) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, show_default=False)


Source = Annotated[Path, typer.Argument(help="Rectified-flow run folder or checkpoint.")]


def _flow(source: Path, device: str | None, use_ema: bool = True):
    """The flow pipeline of ``source``; a DDPM or anything else is a usage error."""

    from diffkit.methods.flow import FlowPipeline
    from diffkit.methods.load import load_pipeline
    from diffkit.training.hardware import resolve_device

    settings = machine_settings(None, None, device)
    pipe = load_pipeline(source, resolve_device(settings.device), use_ema=use_ema)
    if not isinstance(pipe, FlowPipeline):
        raise UsageError(f"{source} is a {pipe.model.name} model; reflow needs a "
                         "rectified flow (`diffkit train rf`)")  # fmt: skip
    return pipe


@app.command("make-pairs")
@handle_errors
def make_pairs(
    source: Annotated[
        Path | None,
        typer.Argument(
            help="Rectified-flow run or checkpoint (not with --resume).", show_default=False
        ),
    ] = None,
    n: Annotated[int, typer.Option("-n", "--num-pairs", help="Number of pairs.")] = 60_000,
    steps: Annotated[int, typer.Option(help="Solver steps per pair.")] = 100,
    solver: Annotated[sampler_names("flow"), typer.Option(help="ODE solver.")] = "euler",
    shard_size: Annotated[int, typer.Option(help="Pairs per shard file.")] = 5000,
    batch_size: Annotated[int, typer.Option(help="Pairs per forward pass.")] = 500,
    guidance: Guidance = 1.0,
    seed: Seed = None,
    name: Annotated[str | None, _opt("Pair-set name (folder suffix).")] = None,
    resume: Annotated[Path | None, _opt("Finish this interrupted pair set.")] = None,
    runs_dir: RunsDir = None,
    device: Device = None,
) -> None:
    """Integrate a trained flow from fixed noise and write (noise, sample[, label]) pairs as
    safetensors shards into RUNS_DIR/pairs/<stamp>-<name>; resumable shard by shard."""
    import json

    from diffkit.config.resolve import validate
    from diffkit.config.run import PairsConfig
    from diffkit.methods.reflow import file_sha256, make_pairs
    from diffkit.runs.checkpoint import resolve_checkpoint
    from diffkit.runs.layout import RunDir, check_writable

    settings = machine_settings(None, runs_dir, device)
    if resume is not None:
        if source is not None:
            raise UsageError("--resume continues a pair set as made; give no SOURCE")
        try:
            cfg = validate(PairsConfig, json.loads((resume / "config.json").read_text()))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot resume {resume}: no pair-set config.json ({exc})") from None
        folder, source = resume, Path(cfg.source)
    else:
        if source is None:
            raise UsageError("give the flow to integrate (SOURCE) or --resume PAIRS")
        ckpt = resolve_checkpoint(source)
        cfg = validate(PairsConfig, {
            "source": str(source), "source_sha256": file_sha256(ckpt), "n": n, "steps": steps,
            "solver": solver, "shard_size": shard_size, "batch_size": batch_size,
            "seed": seed or 0, "guidance": guidance, **({"name": name} if name else {}),
        })  # fmt: skip
        folder = None
    check_writable(folder or settings.runs_dir)  # before any sampling, not after
    pipe = _flow(source, device, use_ema=cfg.use_ema)
    if resume is not None and file_sha256(resolve_checkpoint(source)) != cfg.source_sha256:
        raise UsageError(f"{source} changed since {resume} was started (sha256 differs)")
    if guidance != 1.0 and pipe.num_classes is None:
        raise UsageError("--guidance needs a class-conditional flow")
    folder = folder or RunDir.create(settings.runs_dir, "pairs", cfg.name, subfolders=False).path
    console.info(f"pair set: {folder}")
    with console.steps(f"{cfg.solver}-{cfg.steps}, pairs", cfg.n) as advance:

        def kept(p) -> None:  # a resumed shard whose file is intact counts as done
            if p.skipped:
                advance(min(cfg.shard_size, cfg.n - p.shard * cfg.shard_size))

        try:
            manifest = make_pairs(cfg, pipe, folder, resume=resume is not None,
                                  on_shard=kept, on_batch=advance)  # fmt: skip
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM
            code = interrupted(exc, f"finished shards are kept. Continue with "
                               f"`diffkit reflow make-pairs --resume {folder}`")  # fmt: skip
            raise typer.Exit(code) from None
    made = sum(e.get("seconds", 0.0) for e in manifest["shards"].values())
    s = manifest.get("straightness")
    console.info(f"{cfg.n} pairs in {len(manifest['shards'])} shards ({made:.0f} s of "
                 f"sampling in all)" + (f"; straightness S of the source {s:.4g}"
                                        if s is not None else ""))  # fmt: skip
    console.out.print(str(folder))


REFLOW_TRAIN = (
    Flag("pairs", Path | None, typer.Argument(
        help="Pair set from `reflow make-pairs` (not with --resume).", show_default=False),
        None),
    option("init_from", Path | None, "Run or checkpoint whose EMA weights start training "
           "(default: the flow that made the pairs).", MODEL),
    Flag("scratch", bool, typer.Option("--scratch", help="Start from random weights."), MODEL,
         default=False),
    option("distill", int | None, "Distil into a k-step model: train only at t = 0, 1/k, ... "
           "(k=1: one step).", MODEL, None, "--distill"),
    EPOCHS.but("Passes over the pairs (default: the source's)."),
    BATCH_SIZE.but("Pairs per step."), GRAD_ACCUM, LR, MAX_STEPS, SAMPLE_EVERY,
    SAMPLE_EVERY_STEPS,
    Flag("straightness_n", int, typer.Option(
        help="Paths for the final straightness S (0 = skip)."), PREVIEW, default=500),
    NAME.but("Run name (default 2rf, 3rf, ... or distillK-...)."), SEED,
    RESUME.but("Continue this reflow run where it stopped."), DATA_DIR, RUNS_DIR, DEVICE,
    *CLOSING,
)  # fmt: skip


@app.command("train")
@handle_errors
@takes(REFLOW_TRAIN)
def train(**o: Any) -> None:
    """Train the next rectified flow on fixed pairs (Liu et al. 2022, Sec. 2.3), or with
    --distill a k-step model; the run goes to RUNS_DIR/reflow/. Repeatable: pairs of a
    2-RF train a 3-RF."""
    from diffkit.app.train import ReflowRequest, reflow
    from diffkit.cli.shared import begin, logger_names, train_diffusion

    request = ReflowRequest(o["pairs"], init_from=o["init_from"], scratch=o["scratch"],
                            distill=o["distill"], overrides=config_flags(REFLOW_TRAIN, o),
                            resume=o["resume"])  # fmt: skip
    loggers = logger_names(o["loggers"])
    settings = machine_settings(o["data_dir"], o["runs_dir"], o["device"], o["compile_net"])
    plan = reflow(request, settings.device, console)
    begin(plan, settings, o["print_config"])
    out = train_diffusion(plan, settings, loggers=loggers)
    if out is not None and o["straightness_n"] > 0:
        _report_straightness(out, o["straightness_n"], o["device"])


def _report_straightness(run, n: int, device: str | None) -> None:
    from diffkit.methods.reflow import straightness
    from diffkit.runs.layout import write_json

    s = straightness(_flow(run.path, device), n=n, steps=100)
    write_json(run.path / "straightness.json", s)
    console.info(f"straightness S = {s['straightness']:.4g} ± {s['straightness_std']:.2g} "
                 f"({n} paths, 100 Euler steps)")  # fmt: skip


@app.command("straightness")
@handle_errors
def straightness_cmd(
    source: Source,
    n: Annotated[int, typer.Option("-n", "--num-paths", help="Paths to average over.")] = 500,
    steps: Annotated[int, typer.Option(help="Euler steps per path.")] = 100,
    guidance: Guidance = 1.0,
    seed: Seed = None,
    device: Device = None,
) -> None:
    """Straightness S = int E||(x1 - x0) - v(x_t, t)||^2 dt / d of a flow's ODE paths
    (0 = straight lines; Liu et al. 2022, Eq. 5)."""
    from diffkit.methods.reflow import straightness
    from diffkit.runs.layout import run_folder_of, write_json

    if n < 2 or steps < 1:
        raise UsageError("-n must be at least 2 and --steps at least 1")
    pipe = _flow(source, device)
    if guidance != 1.0 and pipe.num_classes is None:
        raise UsageError("--guidance needs a class-conditional flow")
    s = straightness(pipe, n=n, steps=steps, seed=seed or 0, guidance=guidance)
    folder = run_folder_of(source)
    if (folder / "config.json").is_file():
        write_json(folder / "straightness.json", s)
    console.info(f"S = {s['straightness']:.4g} ± {s['straightness_std']:.2g} over {n} paths, "
                 f"{steps} Euler steps")  # fmt: skip
    console.out.print(f"{s['straightness']:.6f}")
