"""``diffkit denoise-bench RUN...``: PSNR of single-step denoisers across noise levels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from diffkit.app.bench import BenchResult, DenoiseBenchRequest
from diffkit.app.bench import denoise_bench as bench_denoisers
from diffkit.cli import console
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.options import ClassifierPath, DataDir, Device, RunsDir, Seed, machine_settings

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


@handle_errors
def denoise_bench(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Denoiser, pixel DDPM or rectified-flow runs (DDPMs and flows denoise "
            "through Tweedie's formula).",
            show_default=False,
        ),
    ] = None,
    sigmas: Annotated[
        str, typer.Option(help="Noise levels, images in [0, 1] (the seeds' units).")
    ] = SEED_SIGMAS,
    baselines: Annotated[
        str, typer.Option(help="Comma-separated: blur (best Gaussian per sigma), oracle, none.")
    ] = "blur,oracle",
    pure_noise: Annotated[
        bool,
        typer.Option("--pure-noise", help="Also denoise pure noise: distance to the mean digit."),
    ] = False,
    n: Annotated[
        int, typer.Option("-n", "--num-images", help="Test images per noise level.", min=1)
    ] = 1000,
    classifier: ClassifierPath = None,
    out: Annotated[
        Path, typer.Option(help="Folder for bench.json, psnr.png and the grids.")
    ] = Path("denoise-bench"),
    seed: Seed = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.", min=1)] = 500,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
) -> None:
    """Denoise the test split at each sigma: PSNR and MSE per model, classifier accuracy of
    the denoised digits, a PSNR-vs-sigma plot (the out-of-distribution curve) and a grid per
    sigma; JSON + table + plot into --out."""
    request = DenoiseBenchRequest(
        tuple(runs or ()), tuple(parse_sigmas(sigmas)),
        tuple(b.strip() for b in baselines.split(",") if b.strip() and b.strip() != "none"),
        pure_noise=pure_noise, n=n, classifier=classifier, out=out, seed=seed or 0,
        batch_size=batch_size,
    )  # fmt: skip
    result = bench_denoisers(request, machine_settings(data_dir, runs_dir, device), console)
    _table(result)
    console.out.print(str(result.folder))


def _table(result: BenchResult) -> None:
    r, points = result.report, result.points
    names = list(dict.fromkeys(p.model for p in points))
    table = [[m] + [f"{p.psnr:.2f}" for p in points if p.model == m] for m in names]
    console.table(f"PSNR (dB), {r['n']} {r['dataset']} test images", ["model",
                  *(f"σ={s:g}" for s in r["sigmas"])], table)  # fmt: skip
