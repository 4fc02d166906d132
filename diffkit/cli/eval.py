"""``diffkit eval RUN_OR_SAMPLES``: FID / KID / IS / precision-recall against the test split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffkit.app.edit.requests import ANCESTRAL
from diffkit.app.evaluate import EvalRequest, EvalResult, SweepResult
from diffkit.app.evaluate import evaluate as score_source
from diffkit.cli import console
from diffkit.cli.choices import family_defaults
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
    GUIDANCE_SCALE,
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
    picked,
    takes,
)
from diffkit.cli.options import machine_settings
from diffkit.cli.shared import control_request

if TYPE_CHECKING:
    from diffkit.eval.sweep import SweepPoint


def _rows(metrics: dict[str, Any], floor: dict[str, Any] | None) -> list[list[str]]:
    def fmt(m: dict[str, Any] | None, key: str) -> str:
        if m is None or key not in m:
            return "-"
        if key == "kid":
            return f"{m[key]:.4g} ± {m[key + '_std']:.2g}"
        if key == "is":
            return f"{m[key]:.3f} ± {m[key + '_std']:.3f}"
        return f"{m[key]:.4f}" if key in ("precision", "recall") else f"{m[key]:.3f}"

    names = {"fid": "FID", "kid": "KID", "is": "IS", "precision": "precision",
             "recall": "recall"}  # fmt: skip
    rows = [[label, fmt(metrics, k), fmt(floor, k)] for k, label in names.items()]
    for key, label in (("recon_mse", "reconstruction MSE"), ("psnr", "PSNR (dB)")):
        if key in metrics:
            rows.append([label, f"{metrics[key]:.4g}", "-"])

    def spread(m: dict[str, Any] | None) -> str:
        return "-" if m is None else f"{m['mean']:.4f} ± {m['std']:.3f}"

    for key, label in (("lpips_diversity", "LPIPS diversity"), ("lpips", "LPIPS to input")):
        if key in metrics:
            rows.append([label, spread(metrics[key]), spread((floor or {}).get(key))])
    for cls, acc in metrics.get("class_accuracy", {}).items():
        rows.append([f"class accuracy [{cls}]", f"{acc:.4f}", "-"])
    edges = metrics.get("edges", {})
    for key, label in (("f1", "edge F1 (1 px)"), ("f1_exact", "edge F1 (exact)"),
                       ("precision", "edge precision"),
                       ("recall", "edge recall"), ("sobel_l1", "Sobel L1")):  # fmt: skip
        if key in edges:
            rows.append([label, f"{edges[key]:.4f}", "-"])
    return rows


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
    option("steps", int | None, "Sampling steps (default: T for ddpm, else 50).", SAMPLER),
    ETA, SPACING, RTOL, ATOL, GUIDANCE_SCALE, SEED, BATCH, FEATURES, CLASSIFIER_PATH,
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
    settings = machine_settings(o["data_dir"], o["runs_dir"], o["device"], o["compile_net"])
    settings = settings.model_copy(update={k: o[k] for k in WEIGHTS if o[k] is not None})
    result = score_source(request, settings, console)
    if isinstance(result, SweepResult):
        _sweep_table(result)
        console.out.print(str(result.folder))
    else:
        _table(o["source"], result)
        console.out.print(str(result.path))


def _table(source: Path, result: EvalResult) -> None:
    r = result.report
    what, column = ("reconstructions",) * 2 if result.reconstructions else ("images", "samples")
    title = f"{source.name}: {r['n']} {what} vs {r['dataset']} test ({r['features']})"
    console.table(title, ["metric", column, "real floor"], _rows(r["metrics"], r["floor"]))


def _acc(m: dict[str, Any]) -> str:
    return f"{m['class_accuracy']['all']:.3f}" if "class_accuracy" in m else "-"


def _sweep_table(result: SweepResult) -> None:
    edges, floor = result.edges, result.report["floor"]

    def row(p: SweepPoint) -> list:
        m = p.metrics
        return [p.sampler, p.steps, "-" if p.guidance is None else f"{p.guidance:g}",
                *([f"{p.control_scale:g}", f"{m['edges']['f1']:.3f}"] if edges else []),
                f"{m['fid']:.3f}", f"{m['kid']:.4g}", f"{m['is']:.3f}",
                f"{m['precision']:.3f}", f"{m['recall']:.3f}", _acc(m),
                f"{p.wall_seconds:.2f}", f"{p.ms_per_image:.2f}"]  # fmt: skip

    rows = [row(p) for p in result.points]
    rows.append(["real floor", "-", "-", *(["-", "-"] if edges else []), f"{floor['fid']:.3f}",
                 f"{floor['kid']:.4g}", f"{floor['is']:.3f}", f"{floor['precision']:.3f}",
                 f"{floor['recall']:.3f}", "-", "-", "-"])  # fmt: skip
    console.table(
        f"sweep: {result.report['n']} images per point vs {result.report['dataset']} test",
        ["sampler", "steps", "w", *(["control", "edge F1"] if edges else []), "FID", "KID",
         "IS", "precision", "recall", "class acc", "seconds", "ms/img"],
        rows,
    )  # fmt: skip
