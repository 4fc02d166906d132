"""``diffkit eval RUN_OR_SAMPLES``: FID / KID / IS / precision-recall against the test split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from diffkit.app.common import ControlRequest
from diffkit.app.evaluate import EvalRequest, EvalResult, SweepResult
from diffkit.app.evaluate import evaluate as score_source
from diffkit.cli import console
from diffkit.cli.choices import family_defaults, sampler_names
from diffkit.cli.errors import handle_errors
from diffkit.cli.options import (
    Atol,
    ClassifierPath,
    Compile,
    ControlEnd,
    ControlScale,
    ControlStart,
    DataDir,
    Device,
    Eta,
    FeatureNet,
    GuessMode,
    Guidance,
    HintIsEdges,
    HintSpec,
    Lpips,
    LpipsNet,
    LpipsWeights,
    NoEma,
    Rtol,
    RunsDir,
    Seed,
    SpacingOpt,
    TFInceptionWeights,
    machine_settings,
)

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


BatchSize = Annotated[int, typer.Option(help="Images per forward pass.")]
Source = Annotated[
    Path,
    typer.Argument(
        help="Run folder, checkpoint, samples folder / one of its .safetensors shards, or "
        "a VAE run.",
        show_default=False,
    ),
]
NumImages = Annotated[int, typer.Option("-n", "--num-images", help="Images to generate and score.")]
Steps = Annotated[
    int | None,
    typer.Option(help="Sampling steps (default: T for ddpm, else 50).", show_default=False),
]
InceptionWeights = Annotated[
    Path | None,
    typer.Option(
        help="InceptionV3 .pth (env DIFFKIT_INCEPTION_WEIGHTS; default: torch hub cache).",
        show_default=False,
    ),
]
SamplesDataset = Annotated[
    str | None,
    typer.Option(help="Dataset of a samples file without provenance.", show_default=False),
]
Sweep = Annotated[
    str | None,
    typer.Option(
        help="Sweep step counts (steps=1,2,5,10,20,50,100,1000), for class-conditional "
        "models guidance scales (guidance=0,1,2,3,5,7) at --steps, or for ControlNet "
        "runs control scales (control_scale=0,0.5,1,1.5,2).",
        show_default=False,
    ),
]
EvalOut = Annotated[
    Path | None,
    typer.Option(help="Folder for results (default: SOURCE/eval).", show_default=False),
]


@handle_errors
def evaluate(
    source: Source,
    n: NumImages = 10000,
    sampler: Annotated[
        sampler_names() | None,
        typer.Option(
            "--sampler",
            "--solver",
            help="Sampler or ODE solver for runs (see `diffkit sample --help`; default: "
            f"{family_defaults()}).",
            show_default=False,
        ),
    ] = None,
    steps: Steps = None,
    eta: Eta = 0.0,
    spacing: SpacingOpt = None,
    rtol: Rtol = 1e-3,
    atol: Atol = 1e-3,
    guidance: Guidance = 1.0,
    seed: Seed = None,
    batch_size: BatchSize = 500,
    features: FeatureNet = "classifier",
    classifier: ClassifierPath = None,
    inception_weights: InceptionWeights = None,
    tf_inception_weights: TFInceptionWeights = None,
    lpips: Lpips = False,
    lpips_net: LpipsNet = "alex",
    lpips_weights: LpipsWeights = None,
    dataset: SamplesDataset = None,
    sweep: Sweep = None,
    samplers: Annotated[
        str | None,
        typer.Option(
            help="Samplers of a --sweep, comma separated (default: ddpm,ddim for DDPMs, "
            "euler for flows).",
            show_default=False,
        ),
    ] = None,
    out: EvalOut = None,
    hint: HintSpec = None,
    hint_is_edges: HintIsEdges = False,
    control_scale: ControlScale = 1.0,
    control_start: ControlStart = 0.0,
    control_end: ControlEnd = 1.0,
    guess_mode: GuessMode = False,
    no_ema: NoEma = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    compile_net: Compile = None,
) -> None:
    """Score a model or saved samples: FID, KID, IS, precision/recall (+ class accuracy),
    beside the real-vs-real floor; results go to SOURCE/eval/<stamp>.json. A ControlNet
    run is scored on --hint (e.g. mnist:test) and also for edge consistency (edge F1 at
    1 px and Sobel L1 against each hint's source). A VAE run is scored by its
    reconstructions of -n test images (MSE, PSNR, rFID; LPIPS with --lpips)."""
    request = EvalRequest(
        source, n=n, sampler=sampler, steps=steps, eta=eta, spacing=spacing, rtol=rtol,
        atol=atol, guidance=guidance, seed=0 if seed is None else seed, batch_size=batch_size,
        features=features, classifier=classifier, lpips=lpips, lpips_net=lpips_net,
        dataset=dataset, sweep=sweep, samplers=samplers, out=out, use_ema=not no_ema,
        control=ControlRequest(hint, hint_is_edges, control_scale, control_start, control_end,
                               guess_mode),
        compile=compile_net,
    )  # fmt: skip
    weights = {"inception_weights": inception_weights, "lpips_weights": lpips_weights,
               "tf_inception_weights": tf_inception_weights}  # fmt: skip
    settings = machine_settings(data_dir, runs_dir, device, compile_net).model_copy(
        update={k: v for k, v in weights.items() if v is not None}
    )  # fmt: skip
    result = score_source(request, settings, console)
    if isinstance(result, SweepResult):
        _sweep_table(result)
        console.out.print(str(result.folder))
    else:
        _table(source, result)
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
