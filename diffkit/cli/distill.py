"""``diffkit distill``: few-step students of a trained DDPM or flow."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from diffkit.cli import console
from diffkit.cli.errors import handle_errors
from diffkit.cli.flags import (
    BATCH_SIZE,
    CHECKPOINTING,
    DEVICE,
    GRAD_ACCUM,
    LOGGERS,
    LR,
    MAX_STEPS,
    MODEL,
    NAME,
    PRINT_CONFIG,
    RESUME,
    SAMPLE_EVERY_STEPS,
    TRAIN_COMPILE,
    TRAIN_DATA_DIR,
    TRAIN_RUNS_DIR,
    TRAIN_SEED,
    argument,
    config_flags,
    option,
    takes,
)
from diffkit.cli.options import settings_of

DISTILL = (
    argument("source", Path | None, "Teacher: a DDPM, latent DDPM or flow run or checkpoint "
             "(not with --resume).", None),
    option("method", Literal["cd", "ect", "reflow"] | None,
           "cd: consistency distillation, one teacher ODE step per target (Song et al. 2023; "
           "default); ect: consistency tuning from the teacher's weights, no teacher calls "
           "(Geng et al. 2024); reflow: k-step distillation of a flow on --pairs (Liu et al. "
           "2022), as `reflow train --distill K`.", MODEL),
    option("steps", int | None, "Steps the student samples with by default (cd, ect: 2; "
           "reflow: the k it trains for, 1).", MODEL),
    option("teacher_steps", int | None, "cd: the grid the teacher steps along (default 50).",
           MODEL),
    option("guidance", float | None, "cd: bake the teacher's classifier-free guidance scale "
           "into the student (class-conditional teachers; default 1, guidance kept for "
           "sampling).", MODEL),
    option("pairs", Path | None, "reflow: the pair set from `diffkit reflow make-pairs`.", MODEL),
    MAX_STEPS.but("Optimizer steps (default: cd 1500, ect 2000)."),
    BATCH_SIZE.but("Images (reflow: pairs) per step (default: the teacher's)."), GRAD_ACCUM,
    LR.but("Peak learning rate (default: cd 2e-4, ect 1e-4)."), SAMPLE_EVERY_STEPS,
    NAME.but("Run name (default cd2, ect2, ... or distillK-...)."), TRAIN_SEED,
    RESUME.but("Continue this student run where it stopped."), TRAIN_DATA_DIR, TRAIN_RUNS_DIR,
    DEVICE, *CHECKPOINTING, LOGGERS, TRAIN_COMPILE,
    PRINT_CONFIG.but("Print the fully resolved config as TOML and exit; nothing is written."),
)  # fmt: skip


@handle_errors
@takes(DISTILL)
def distill(**o: Any) -> None:
    """Distil a trained DDPM or flow into a student that samples in 1, 2 or 4 network
    evaluations (by default at --steps with ddim for a DDPM, consistency for a flow); the
    run goes to RUNS_DIR/distill/ (reflow: RUNS_DIR/reflow/) and samples, evaluates,
    resumes and exports like any run."""
    from diffkit.app.distill import DistillRequest, plan_distill
    from diffkit.cli.shared import begin, logger_names, train_diffusion

    request = DistillRequest(
        o["source"], method=o["method"], steps=o["steps"], teacher_steps=o["teacher_steps"],
        guidance=o["guidance"], pairs=o["pairs"], overrides=config_flags(DISTILL, o),
        resume=o["resume"],
    )  # fmt: skip
    loggers = logger_names(o["loggers"])
    settings = settings_of(o)
    plan = plan_distill(request, settings.device, console)
    begin(plan, settings, o["print_config"])
    train_diffusion(plan, settings, loggers=loggers)
