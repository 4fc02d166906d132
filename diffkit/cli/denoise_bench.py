"""``diffkit denoise-bench RUN...``: PSNR of single-step denoisers across noise levels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from diffkit.app.bench import DenoiseBenchRequest
from diffkit.app.bench import denoise_bench as bench_denoisers
from diffkit.app.tables import denoise_bench_table
from diffkit.cli import console
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.flags import (
    CLASSIFIER_PATH,
    DATA_DIR,
    DEVICE,
    OUTPUT,
    RUNS_DIR,
    SAMPLER,
    SEED,
    argument,
    flag,
    takes,
)
from diffkit.cli.options import settings_of
from diffkit.cli.shared import picked

SEED_SIGMAS = "0,0.2,0.4,0.5,0.6,0.8,1.0"


def parse_sigmas(spec: str) -> list[float]:
    """``0,0.2,0.5`` -> [0.0, 0.2, 0.5] (sorted, unique); finite, >= 0, at least one."""
    try:
        values = sorted({float(v) for v in spec.split(",") if v.strip()})
    except ValueError:
        raise UsageError(f"--sigmas {spec!r}: give comma-separated numbers, e.g. "
                         f"{SEED_SIGMAS}") from None  # fmt: skip
    if not values:
        raise UsageError(f"--sigmas {spec!r}: give at least one noise level")
    bad = [v for v in values if not math.isfinite(v) or v < 0 or v > 100]
    if bad:
        raise UsageError(f"--sigmas: {bad[0]} is not a noise level in 0..100")
    return values


DENOISE_BENCH = (
    argument("runs", list[Path] | None, "Denoiser, pixel DDPM or rectified-flow runs (DDPMs and "
             "flows denoise through Tweedie's formula).", None),
    flag("sigmas", str, SEED_SIGMAS, "Noise levels sigma of y = x + sigma eps, images in "
         "[0, 1].", None),
    flag("baselines", str, "blur,oracle",
         "Comma-separated: blur (best Gaussian per sigma), oracle, none.", None),
    flag("pure_noise", bool, False, "Also denoise pure noise: distance to the mean digit.", None,
         "--pure-noise"),
    flag("n", int, 1000, "Test images per noise level.", None, "-n", "--num-images", min=1),
    CLASSIFIER_PATH,
    flag("out", Path, Path("denoise-bench"), "Folder for bench.json, psnr.png and the grids.",
         OUTPUT),
    SEED, flag("batch_size", int, 500, "Images per forward pass.", SAMPLER, min=1),
    DATA_DIR, RUNS_DIR, DEVICE,
)  # fmt: skip


@handle_errors
@takes(DENOISE_BENCH)
def denoise_bench(**o: Any) -> None:
    """Denoise the test split at each sigma: PSNR and MSE per model, classifier accuracy of
    the denoised digits, a PSNR-vs-sigma plot (the out-of-distribution curve) and a grid per
    sigma; JSON + table + plot into --out."""
    baselines = (b.strip() for b in o["baselines"].split(","))
    request = picked(DenoiseBenchRequest, o, runs=tuple(o["runs"] or ()),
                     sigmas=tuple(parse_sigmas(o["sigmas"])),
                     baselines=tuple(b for b in baselines if b and b != "none"),
                     seed=o["seed"] or 0)  # fmt: skip
    settings = settings_of(o)
    result = bench_denoisers(request, settings, console)
    console.table(*denoise_bench_table(result))
    console.out.print(str(result.folder))
