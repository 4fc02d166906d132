"""``diffkit sample RUN_OR_CHECKPOINT``: draw images from a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from diffkit.cli import console
from diffkit.cli.choices import sampler_help, steps_help
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.flags import (
    ATOL,
    CACHE,
    CACHE_OPTIONS,
    COMPILE,
    CONTROL,
    DATA_DIR,
    DEVICE,
    ETA,
    GUIDANCE,
    GUIDANCE_INTERVAL,
    GUIDANCE_SCALE,
    GUIDE_MODEL,
    NO_EMA,
    OUTPUT,
    OVERWRITE,
    RTOL,
    SAMPLER,
    SEED,
    SPACING,
    Deferred,
    any_sampler,
    argument,
    flag,
    option,
    takes,
)
from diffkit.cli.options import settings_of
from diffkit.cli.shared import cache_request, control_request, picked

SAMPLE = (
    argument("source", Path, "Run folder, .safetensors checkpoint, a saved diffusers DDPM/DDIM "
             "pipeline folder, or hf:ORG/NAME (the Hugging Face cache; needs the diffusers "
             "extra)."),
    any_sampler(sampler_help),
    Deferred("steps", lambda: option(
        "steps", int | None, f"Steps (default: {steps_help()}).",
        SAMPLER)),
    RTOL, ATOL, ETA, SPACING,
    option("variance", Literal["fixed_small", "fixed_large", "learned_range"] | None,
           "DDPM reverse variance (default: the model's; fixed_small for diffkit runs, "
           "learned_range for a network that learned it).", SAMPLER),
    option("n", int | None, "Number of images (64), or per class with --grid-per-class (10).",
           None, None, "-n", "--num-images"),
    option("classes", list[str] | None, "Class(es) to draw: index, range (0..9), name or "
           "'all'; repeatable or comma separated; images cycle through them.", GUIDANCE, None,
           "--class"),
    GUIDANCE_SCALE, GUIDE_MODEL, GUIDANCE_INTERVAL,
    flag("grid_per_class", bool, False, "grid.png with one column per class, its name above "
         "it (with --class: those classes).", OUTPUT, "--grid-per-class"),
    SEED, flag("batch_size", int, 256, "Images per forward pass.", SAMPLER, min=1),
    option("out", Path | None, "Output folder (default RUN/samples/SAMPLER-STEPS-seedSEED, "
           "never overwritten).", OUTPUT),
    OVERWRITE,
    flag("cache_interval", int, 1, "DeepCache: run the whole UNet every N network calls "
         "(1 = off).", CACHE, min=1),
    *CACHE_OPTIONS, *CONTROL, DATA_DIR, DEVICE, NO_EMA, COMPILE,
)  # fmt: skip


@handle_errors
@takes(SAMPLE)
def sample(**o: Any) -> None:
    """Sample images: writes grid.png (up to 256), samples-NNNNN.safetensors shards and
    sample.json; the folder appears when it is complete. A ControlNet run samples with
    --hint: one image per hint by default, hints cycling when -n is larger."""
    from diffkit.app.sample import SampleRequest, Sampling
    from diffkit.app.sample import sample as draw

    if o["n"] is not None and o["n"] < 1:
        raise UsageError("-n must be at least 1")
    settings = settings_of(o)
    request = picked(SampleRequest, o, sampling=picked(Sampling, o),
                     classes=tuple(o["classes"] or ()), cache=cache_request(o, o["cache_interval"]),
                     hint=control_request(o), use_ema=not o["no_ema"])  # fmt: skip
    result = draw(request, settings, report=console)
    console.info(result.summary)
    console.out.print(str(result.folder))
