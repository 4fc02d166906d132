"""``diffkit denoise-bench RUN...``: PSNR of single-step denoisers across noise levels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

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

    from diffkit.config.run import DataConfig
    from diffkit.data.loader import to_unit_range
    from diffkit.data.registry import load_dataset
    from diffkit.eval.denoise import (
        as_dicts,
        blur_denoiser,
        oracle_denoiser,
        plot_psnr,
        run_bench,
    )
    from diffkit.eval.denoise import (
        pure_noise as run_pure_noise,
    )
    from diffkit.methods.denoiser import load_denoiser
    from diffkit.runs.layout import check_writable, write_json
    from diffkit.runs.plots import save_grid
    from diffkit.training.hardware import resolve_device

    levels = parse_sigmas(sigmas)
    picked = [b.strip() for b in baselines.split(",") if b.strip() and b.strip() != "none"]
    unknown = [b for b in picked if b not in ("blur", "oracle")]
    if unknown:
        raise UsageError(f"--baselines: unknown {', '.join(unknown)}; use blur, oracle or none")
    if not runs and not picked:
        raise UsageError("nothing to benchmark: give runs or --baselines blur,oracle")
    settings = machine_settings(data_dir, runs_dir, device)
    dev = resolve_device(settings.device)
    models = [load_denoiser(r, dev) for r in runs or []]
    datasets = {m.dataset or "mnist" for m in models} or {"mnist"}
    if len(datasets) > 1:
        raise UsageError(f"the runs were trained on different datasets: {', '.join(datasets)}")
    dataset = datasets.pop()
    check_writable(out)
    test = load_dataset(DataConfig(dataset=dataset), settings.data_dir, "test", download=False)
    x = to_unit_range(test.images[:n])
    labels = test.labels[:n] if test.labels is not None else None
    train = None
    if "oracle" in picked or pure_noise:
        train = to_unit_range(load_dataset(DataConfig(dataset=dataset), settings.data_dir,
                                           "train", download=False).images)  # fmt: skip
    widths: dict[float, float] = {}
    if "blur" in picked:
        blur, widths = blur_denoiser(to_unit_range(test.images[-500:]))  # held out from x
        models.append(blur)
    if "oracle" in picked:
        models.append(oracle_denoiser(train))  # type: ignore[arg-type]
    classify, about = _classifier(dataset, settings, dev, classifier, labels)

    def report(p) -> None:
        acc = f"  acc {p.accuracy:.3f}" if p.accuracy is not None else ""
        console.info(f"sigma {p.sigma:<4g} {p.model:<28} PSNR {p.psnr:6.2f} dB  "
                     f"MSE {p.mse:.5f}{acc}")  # fmt: skip

    points, grids = run_bench(models, x, labels, levels, classify=classify,
                              seed=seed or 0, batch_size=batch_size, on_point=report)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for sigma, grid in grids.items():
        save_grid(grid, out / f"grid-sigma{sigma:g}.png", nrow=10)
    plot_psnr(points, out / "psnr.png")
    result = {"runs": [str(r) for r in runs or []], "dataset": dataset, "n": x.shape[0],
              "sigmas": levels, "seed": seed or 0,
              "classifier_sha256": about["sha256"] if about else None, "classifier": about,
              "blur_widths": {f"{k:g}": v for k, v in widths.items()},
              "points": as_dicts(points)}  # fmt: skip
    if pure_noise:
        mean = train.mean(0)  # type: ignore[union-attr]
        noise_rows, grid = run_pure_noise(models, tuple(x.shape[1:]), mean, 0.5, seed=seed or 0)
        save_grid(grid, out / "pure-noise.png", nrow=9)
        result["pure_noise"] = {"sigma": 0.5, "models": noise_rows}
        for r in noise_rows:
            console.info(f"pure noise  {r['model']:<28} RMS to the mean digit "
                         f"{r['rms_to_mean']:.4f}, spread {r['spread']:.4f}")  # fmt: skip
    write_json(out / "bench.json", result)
    names = list(dict.fromkeys(p.model for p in points))
    table = [[m] + [f"{p.psnr:.2f}" for p in points if p.model == m] for m in names]
    console.table(f"PSNR (dB), {x.shape[0]} {dataset} test images", ["model",
                  *(f"σ={s:g}" for s in levels)], table)  # fmt: skip
    console.out.print(str(out))


def _classifier(dataset, settings, device, classifier, labels):
    """``classify(images) -> labels`` with the dataset's feature classifier and its
    ``about()``, or None (no labels, or no qualified classifier and none named: accuracy is
    then left out)."""
    if labels is None:
        return None, None
    from diffkit.data.loader import to_uint8
    from diffkit.eval.features import load_extractor

    try:
        extractor = load_extractor("classifier", dataset, settings.runs_dir, device,
                                   classifier=classifier)  # fmt: skip
    except (OSError, ValueError, RuntimeError) as exc:
        if classifier is not None:
            raise
        console.info(f"no classifier accuracy ({str(exc).splitlines()[0]})")
        return None, None

    def classify(images):
        import torch

        logits = torch.cat([extractor(to_uint8(part).to(device))[1].cpu()
                            for part in images.split(500)])  # fmt: skip
        return logits.argmax(1)

    about = extractor.about()
    console.features(about)
    return classify, about
