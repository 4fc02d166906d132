"""``diffkit eval RUN_OR_SAMPLES``: FID / KID / IS / precision-recall against the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffkit.app.edit.requests import ANCESTRAL
from diffkit.app.evaluate import EvalRequest, SweepResult
from diffkit.app.evaluate import evaluate as score_source
from diffkit.app.tables import eval_table, sweep_table
from diffkit.cli import console
from diffkit.cli.choices import family_defaults, steps_help
from diffkit.cli.errors import handle_errors
from diffkit.cli.flags import (
    ATOL,
    BATCH,
    CLASSIFIER_PATH,
    COMPILE,
    CONTROL,
    DATA_DIR,
    DEVICE,
    ETA,
    FEATURES,
    GUIDANCE_INTERVAL,
    GUIDANCE_SCALE,
    GUIDE_MODEL,
    LPIPS,
    LPIPS_NET,
    LPIPS_WEIGHTS,
    METRICS,
    NO_EMA,
    OUTPUT,
    RTOL,
    RUNS_DIR,
    SAMPLER,
    SEED,
    SPACING,
    TF_INCEPTION_WEIGHTS,
    Deferred,
    any_sampler,
    argument,
    flag,
    option,
    takes,
)
from diffkit.cli.options import settings_of
from diffkit.cli.shared import control_request, picked


def _sweep_samplers() -> Any:
    from diffkit.samplers import registry

    return option("samplers", str | None, "Samplers of a --sweep, comma separated (default: "
                  f"{ANCESTRAL},{registry.default('ddpm')} for DDPMs, "
                  f"{registry.default('flow')} for flows).", None)  # fmt: skip


EVAL = (
    argument("source", Path, "Run folder, checkpoint, samples folder / one of its .safetensors "
             "shards, or a VAE run."),
    flag("n", int, 10000, "Images to generate and score.", None, "-n", "--num-images"),
    any_sampler(lambda: "Sampler or ODE solver for runs (see `diffkit sample --help`; "
                f"default: {family_defaults()})."),
    Deferred("steps", lambda: option(
        "steps", int | None, f"Sampling steps (default: {steps_help()}).", SAMPLER)),
    ETA, SPACING, RTOL, ATOL, GUIDANCE_SCALE, GUIDE_MODEL, GUIDANCE_INTERVAL, SEED, BATCH,
    FEATURES, CLASSIFIER_PATH,
    option("inception_weights", Path | None, "InceptionV3 .pth (env DIFFKIT_INCEPTION_WEIGHTS; "
           "default: torch hub cache).", METRICS),
    TF_INCEPTION_WEIGHTS, LPIPS, LPIPS_NET, LPIPS_WEIGHTS,
    option("dataset", str | None, "Dataset of a samples file without provenance.", METRICS),
    option("sweep", str | None, "Sweep step counts (steps=1,2,5,10,20,50,100,1000), for "
           "class-conditional models guidance scales (guidance=0,1,2,3,5,7) at --steps, or for "
           "ControlNet runs control scales (control_scale=0,0.5,1,1.5,2).", None),
    Deferred("samplers", _sweep_samplers),
    option("out", Path | None, "Folder for results (default: SOURCE/eval).", OUTPUT),
    *CONTROL, NO_EMA, DATA_DIR, RUNS_DIR, DEVICE, COMPILE,
)  # fmt: skip
WEIGHTS = ("inception_weights", "lpips_weights", "tf_inception_weights")


@handle_errors
@takes(EVAL)
def evaluate(**o: Any) -> None:
    """Score a model or saved samples: FID, KID, IS, precision/recall (+ class accuracy),
    beside the real-vs-real floor; results go to SOURCE/eval/<stamp>.json. A ControlNet
    run is scored on --hint (e.g. mnist:test) and also for edge consistency (edge F1 at
    1 px and Sobel L1 against each hint's source). A VAE run is scored by its
    reconstructions of -n test images (MSE, PSNR, rFID; LPIPS with --lpips)."""
    request = picked(EvalRequest, o, seed=o["seed"] or 0, control=control_request(o),
                     use_ema=not o["no_ema"], compile=o["compile_net"])  # fmt: skip
    settings = settings_of(o)
    settings = settings.model_copy(update={k: o[k] for k in WEIGHTS if o[k] is not None})
    result = score_source(request, settings, console)
    if isinstance(result, SweepResult):
        console.table(*sweep_table(result))
        console.out.print(str(result.folder))
    else:
        console.table(*eval_table(o["source"], result))
        console.out.print(str(result.path))
