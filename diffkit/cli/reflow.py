"""``diffkit reflow make-pairs|train|straightness``: straighten a rectified flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from diffkit.cli import console
from diffkit.cli.errors import handle_errors, interrupted
from diffkit.cli.flags import (
    BATCH_SIZE,
    CHECKPOINTING,
    DEVICE,
    EPOCHS,
    GRAD_ACCUM,
    GUIDANCE_SCALE,
    LOGGERS,
    LR,
    MAX_STEPS,
    MODEL,
    NAME,
    OUTPUT,
    PREVIEW,
    PRINT_CONFIG,
    RESUME,
    RUNS_DIR,
    SAMPLE_EVERY,
    SAMPLE_EVERY_STEPS,
    SAMPLER,
    SEED,
    TRAIN_COMPILE,
    TRAIN_DATA_DIR,
    TRAIN_RUNS_DIR,
    TRAIN_SEED,
    Deferred,
    Flag,
    argument,
    config_flags,
    flag,
    option,
    takes,
)
from diffkit.cli.options import settings_of
from diffkit.cli.shared import picked

app = typer.Typer(
    help="Reflow: pairs from a flow's ODE, a straighter flow trained on them, and S.",
    no_args_is_help=True,
)


def _solver() -> Flag:
    from diffkit.cli.choices import sampler_names
    from diffkit.samplers import registry

    return flag("solver", sampler_names("flow"), registry.default("flow"), "ODE solver.", SAMPLER)


MAKE_PAIRS = (
    argument("source", Path | None, "Rectified-flow run or checkpoint (not with --resume).", None),
    flag("n", int, 60_000, "Number of pairs.", None, "-n", "--num-pairs"),
    flag("steps", int, 100, "Solver steps per pair.", SAMPLER), Deferred("solver", _solver),
    flag("shard_size", int, 5000, "Pairs per shard file.", None),
    flag("batch_size", int, 500, "Pairs per forward pass.", SAMPLER), GUIDANCE_SCALE,
    TRAIN_SEED.but(panel=SAMPLER, key=None),
    option("name", str | None, "Pair-set name (folder suffix).", OUTPUT),
    option("resume", Path | None, "Finish this interrupted pair set.", OUTPUT), RUNS_DIR, DEVICE,
)  # fmt: skip


@app.command("make-pairs")
@handle_errors
@takes(MAKE_PAIRS)
def make_pairs(**o: Any) -> None:
    """Integrate a trained flow from fixed noise and write (noise, sample[, label]) pairs as
    safetensors shards into RUNS_DIR/pairs/<stamp>-<name>; resumable shard by shard."""
    from diffkit.app.reflow import PairsRequest, pairs_summary, plan_pairs, write_pairs

    settings = settings_of(o)
    request = picked(PairsRequest, o, seed=o["seed"] or 0)
    plan = plan_pairs(request, settings)
    console.info(f"pair set: {plan.folder}")
    try:
        manifest = write_pairs(plan, console)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM
        code = interrupted(exc, f"finished shards are kept. Continue with "
                           f"`diffkit reflow make-pairs --resume {plan.folder}`")  # fmt: skip
        raise typer.Exit(code) from None
    console.info(pairs_summary(plan.cfg, manifest))
    console.out.print(str(plan.folder))


REFLOW_TRAIN = (
    argument("pairs", Path | None, "Pair set from `reflow make-pairs` (not with --resume).", None),
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
    NAME.but("Run name (default 2rf, 3rf, ... or distillK-...)."), TRAIN_SEED,
    RESUME.but("Continue this reflow run where it stopped."), TRAIN_DATA_DIR, TRAIN_RUNS_DIR,
    DEVICE, *CHECKPOINTING, LOGGERS, TRAIN_COMPILE,
    PRINT_CONFIG.but("Print the fully resolved config as TOML and exit; nothing is written."),
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
    settings = settings_of(o)
    plan = reflow(request, settings.device, console)
    begin(plan, settings, o["print_config"])
    out = train_diffusion(plan, settings, loggers=loggers)
    if out is not None and o["straightness_n"] > 0:
        _report_straightness(out, o["straightness_n"], settings)


def _report_straightness(run, n: int, settings) -> None:
    from diffkit.app.reflow import load_flow
    from diffkit.methods.reflow import straightness
    from diffkit.runs.layout import write_json

    s = straightness(load_flow(run.path, settings), n=n, steps=100)
    write_json(run.path / "straightness.json", s)
    console.info(f"straightness S = {s['straightness']:.4g} ± {s['straightness_std']:.2g} "
                 f"({n} paths, 100 Euler steps)")  # fmt: skip


STRAIGHTNESS = (
    argument("source", Path, "Rectified-flow run folder or checkpoint.", show_default=True),
    flag("n", int, 500, "Paths to average over.", None, "-n", "--num-paths"),
    flag("steps", int, 100, "Euler steps per path.", SAMPLER), GUIDANCE_SCALE, SEED, DEVICE,
)  # fmt: skip


@app.command("straightness")
@handle_errors
@takes(STRAIGHTNESS)
def straightness_cmd(**o: Any) -> None:
    """Straightness S = int E||(x1 - x0) - v(x_t, t)||^2 dt / d of a flow's ODE paths
    (0 = straight lines; Liu et al. 2022, Eq. 5)."""
    from diffkit.app.reflow import StraightnessRequest, straightness

    request = picked(StraightnessRequest, o, seed=o["seed"] or 0)
    s = straightness(request, settings_of(o))
    console.info(f"S = {s['straightness']:.4g} ± {s['straightness_std']:.2g} over {o['n']} "
                 f"paths, {o['steps']} Euler steps")  # fmt: skip
    console.out.print(f"{s['straightness']:.6f}")
