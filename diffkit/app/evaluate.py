"""Score a model or saved samples: FID / KID / IS / precision-recall against the test split,
beside the real-vs-real floor, once (``<stamp>.json``) or over a sweep (``<stamp>-sweep/``).

What is scored: a run folder or checkpoint (sampled here), a diffusers model (its data
named by the request), a samples folder or file (its provenance in ``sample.json``), or a
VAE run (its reconstructions of test images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffkit.app.common import (
    ControlRequest,
    autoguided_by,
    banded_by,
    check_source,
    check_steps,
    free_path,
    guidance_interval,
    progress_total,
    source_name,
)
from diffkit.app.report import QUIET, Reporter
from diffkit.app.sources import Source, check_labels, check_memory, is_vae
from diffkit.errors import UsageError
from diffkit.runs.layout import run_folder_of

if TYPE_CHECKING:
    from diffkit.config.settings import Settings
    from diffkit.eval.evaluate import Evaluator
    from diffkit.eval.features import FeatureExtractor
    from diffkit.eval.sweep import Setting, SweepPoint


@dataclass(frozen=True)
class EvalRequest:
    """What to score and how (``diffkit eval``'s options; the machine is in Settings).

    Built, it has been checked for what needs no model: ``n`` and ``batch_size``, and
    that ``source`` exists."""

    source: Path
    n: int = 10000  # images to generate (a model) or at most to read (saved samples)
    sampler: str | None = None  # default: the model's
    steps: int | None = None  # default: T for ddpm, else 50
    eta: float = 0.0
    spacing: str | None = None
    rtol: float = 1e-3
    atol: float = 1e-3
    guidance: float = 1.0
    seed: int = 0
    batch_size: int = 500
    features: str = "classifier"
    classifier: Path | None = None
    lpips: bool = False  # also LPIPS: diversity of samples, distance to a VAE's inputs
    lpips_net: str = "alex"
    dataset: str | None = None  # of a samples file without provenance, or a foreign model
    sweep: str | None = None  # steps=..., guidance=... or control_scale=...
    samplers: str | None = None  # of a sweep, comma separated
    out: Path | None = None  # default: SOURCE/eval
    control: ControlRequest = field(default_factory=ControlRequest)
    use_ema: bool = True
    compile: bool | None = None  # as asked (the settings say what is done); samples refuse it
    guide_model: Path | None = None  # autoguidance: a weaker version of the model
    guidance_interval: str | None = None  # LO:HI: guide only where sigma lies in (LO, HI]

    def __post_init__(self) -> None:
        from diffkit.eval.evaluate import MIN_SAMPLES

        if self.n < MIN_SAMPLES or self.batch_size < 1:
            raise UsageError(f"-n must be at least {MIN_SAMPLES} and --batch-size at least 1")
        check_source(self.source, "run, checkpoint or samples")


@dataclass(frozen=True)
class EvalResult:
    """One evaluation: the report written to ``path`` (``metrics`` beside the real ``floor``)."""

    path: Path
    report: dict[str, Any]

    @property
    def reconstructions(self) -> bool:
        """Whether a VAE's reconstructions were scored (rather than samples)."""
        return self.report.get("kind") == "vae-reconstruction"


@dataclass(frozen=True)
class SweepResult:
    """A sweep: ``folder`` holds sweep.json (``report``), sweep.png and a grid per point."""

    folder: Path
    report: dict[str, Any]
    points: list[SweepPoint]

    @property
    def edges(self) -> bool:
        """Whether the points were scored for edge consistency with hints (a ControlNet)."""
        return "hint" in self.report


def evaluate(
    request: EvalRequest, settings: Settings, report: Reporter = QUIET
) -> EvalResult | SweepResult:
    """Score ``request.source`` and write the report: SOURCE/eval/<stamp>.json, or with a
    sweep SOURCE/eval/<stamp>-sweep/ (the folder of a samples file; ``request.out``)."""
    from diffkit.runs.layout import check_writable
    from diffkit.training.hardware import resolve_device

    dev = resolve_device(settings.device)
    perceptual = None
    if request.lpips:  # loaded first: a missing package or backbone file fails before any work
        from diffkit.eval.lpips import load_lpips

        perceptual = load_lpips(request.lpips_net, settings.lpips_weights, dev)
    if is_vae(request.source):
        if request.sweep or request.control.hint is not None:
            raise UsageError("a VAE run is scored on its reconstructions: no --sweep or --hint")
        return _evaluate_vae(request, settings, dev, perceptual, report)
    src = _open(request, settings, dev, report)
    plan = _sweep_plan(src, request) if request.sweep else None
    sampler, steps = request.sampler, request.steps
    if src.pipe is not None and plan is None:
        sampler = sampler or src.pipe.DEFAULT_SAMPLER
        steps = check_steps(src.pipe, sampler, steps)
        if request.guidance != 1.0 and src.pipe.num_classes is None and src.hints is None \
                and src.pipe.guide is None:  # fmt: skip
            raise UsageError("--guidance needs a class-conditional model (or --guide-model)")
    out = request.out or src.folder / "eval"
    check_writable(out)  # a read-only folder fails now, not after the scoring
    extractor = load_features(request.features, src.data.dataset, request.classifier,
                              settings, dev)  # fmt: skip
    check_labels(src, extractor.num_classes)
    check_memory(src, src.count(request.n), extractor)
    report.info(f"reference: {src.data.dataset} test split, {request.features} features "
                f"(sha256 {extractor.digest[:12]})")  # fmt: skip
    evaluator = scorer(extractor, src.data, settings, request.seed, report)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    common = _common(request, src, extractor, dev)
    if perceptual is not None:
        common["lpips"] = perceptual.about()
    if plan is not None:
        if perceptual is not None:
            raise UsageError("--lpips scores one evaluation, not a --sweep")
        folder = free_path(out / f"{stamp}-sweep")
        return _run_sweep(src, evaluator, plan, request, folder, common, report)
    n, metrics, floor, generated = _score_once(src, evaluator, request, (sampler, steps),
                                               settings, perceptual, report)  # fmt: skip
    record = common | generated | {"n": n, "metrics": metrics, "floor": floor}
    return _write(out / f"{stamp}.json", record)


def _score_once(src: Source, evaluator: Evaluator, request: EvalRequest, sampling,
                settings: Settings, perceptual, report: Reporter):  # fmt: skip
    """(images scored, metrics, the real floor, what the report records of the sampling)
    of one evaluation: the floor first (too few real images fails before sampling), then
    the images sampled (``sampling``: sampler, steps) or stored, then their scores."""
    floor = evaluator.floor(src.count(request.n))
    images, labels, generated = src.images, src.labels, {}
    if src.pipe is not None:
        images, labels, generated = _generate(src, request, *sampling, report)
        if settings.compile:  # False: torch.compile failed and sampling fell back to eager
            generated["compiled"] = src.pipe.net.active
    report.info(f"scoring {images.shape[0]} images ...")
    metrics = _scorer(evaluator, src)(images, labels)
    if perceptual is not None:
        metrics["lpips_diversity"], floor["lpips_diversity"] = _diversity(
            perceptual, images, src.data, settings, request.seed, report
        )
    return images.shape[0], metrics, floor, generated


def load_features(features: str, dataset: str, classifier: Path | None, settings: Settings,
                  device) -> FeatureExtractor:  # fmt: skip
    """The feature network ``features`` of ``dataset`` (``classifier``: a classifier run to
    use), with the Inception weights the settings name."""
    from diffkit.eval.features import load_extractor

    return load_extractor(features, dataset, settings.runs_dir, device, classifier=classifier,
                          inception_weights=settings.inception_weights,
                          tf_inception_weights=settings.tf_inception_weights)  # fmt: skip


def scorer(extractor: FeatureExtractor, data, settings: Settings, seed: int,
           report: Reporter) -> Evaluator:  # fmt: skip
    """An Evaluator of ``data``'s test split in ``extractor``'s features; then the feature
    network is reported (after the reference: that may have measured its accuracy)."""
    from diffkit.eval.evaluate import Evaluator

    evaluator = Evaluator(data.dataset, extractor, settings, data=data, seed=seed,
                          track=report.steps)  # fmt: skip
    report.features(extractor.about())
    return evaluator


def _write(path: Path, record: dict[str, Any]) -> EvalResult:
    from diffkit.runs.layout import write_json

    path = free_path(path)
    write_json(path, record)
    return EvalResult(path, record)


def _common(request: EvalRequest, src: Source, extractor: FeatureExtractor,
            dev) -> dict[str, Any]:  # fmt: skip
    """What every report of this request records: source, data, features, seed, device;
    with hints, the hint and control."""
    common = {
        "source": str(request.source), "dataset": src.data.dataset,
        "features": request.features, "feature_sha256": extractor.digest,
        "feature_net": extractor.about(), "seed": request.seed, "device": str(dev),
        "created": datetime.now().isoformat(timespec="seconds"),
    }  # fmt: skip
    if src.hints is not None:
        common |= {"hint": request.control.hint, "control": request.control.recorded()}
    return common


def _subset(total: int, n: int, seed: int):
    """``min(n, total)`` random indices of ``total``, the same for the same seed."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=g)[: min(n, total)]


def _diversity(perceptual, images, data, settings: Settings, seed: int, report: Reporter):
    """LPIPS diversity of the samples and, as its floor, of as many real test images."""
    from diffkit.data.registry import load_dataset

    real = load_dataset(data, settings.data_dir, "test", download=settings.download).images
    pick = _subset(real.shape[0], images.shape[0], seed)
    report.info(f"LPIPS ({perceptual.net}) diversity of {images.shape[0]} samples ...")
    return perceptual.diversity(images, seed=seed), perceptual.diversity(real[pick], seed=seed)


def _evaluate_vae(request: EvalRequest, settings: Settings, dev, perceptual,
                  report: Reporter) -> EvalResult:  # fmt: skip
    """Score an autoencoder by its reconstructions of ``n`` random test images: MSE, PSNR,
    LPIPS to the input (with lpips) and FID/KID/IS/precision/recall of the
    reconstructions against the test split (rFID), beside the real floor."""
    from diffkit.data.loader import to_uint8
    from diffkit.data.registry import load_dataset
    from diffkit.eval.evaluate import MIN_SAMPLES
    from diffkit.methods.vae import load_codec
    from diffkit.runs.layout import check_writable

    source, batch_size = request.source, request.batch_size
    codec = load_codec(source, dev)
    data = codec.config.data
    test = load_dataset(data, settings.data_dir, "test", download=settings.download).images
    images = test[_subset(test.shape[0], request.n, request.seed)]
    if images.shape[0] < MIN_SAMPLES:
        raise UsageError(f"the {data.dataset} test split has {images.shape[0]} images; "
                         f"need {MIN_SAMPLES}")  # fmt: skip
    out = request.out or run_folder_of(source) / "eval"
    check_writable(out)
    extractor = load_features(request.features, data.dataset, request.classifier, settings, dev)
    evaluator = scorer(extractor, data, settings, request.seed, report)
    floor = evaluator.floor(images.shape[0])
    report.info(f"reconstructing {images.shape[0]} test images ...")
    x = images.float().div(127.5).sub(1)
    recon = codec.decode(codec.encode(x, batch_size=batch_size), batch_size=batch_size)
    recon = recon.clamp(-1, 1)
    mse = float((recon - x).pow(2).mean())
    metrics = evaluator.score_images(to_uint8(recon)) | {
        "recon_mse": mse, "psnr": 10 * math.log10(4 / max(mse, 1e-12)),  # peak-to-peak 2
    }  # fmt: skip
    if perceptual is not None:
        d = perceptual.distance(x, recon)
        metrics["lpips"] = {"mean": float(d.mean()), "std": float(d.std()), "pairs": len(d)}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    record = {
        "source": str(source), "kind": "vae-reconstruction", "dataset": data.dataset,
        "split": "test", "n": images.shape[0], "seed": request.seed,
        "features": request.features, "feature_sha256": extractor.digest,
        "feature_net": extractor.about(), "vae_sha256": codec.digest, "device": str(dev),
        "created": datetime.now().isoformat(timespec="seconds"),
        "metrics": metrics, "floor": floor,
    }  # fmt: skip
    if perceptual is not None:
        record["lpips"] = perceptual.about()
    return _write(out / f"{stamp}.json", record)


def _scorer(evaluator: Evaluator, src: Source):
    """``score(images, labels) -> metrics``: the evaluator's, plus edge consistency with
    the hints for a ControlNet (image i had hint i mod len(hints))."""
    hints = src.hints
    if hints is None:
        return evaluator.score_images
    import torch

    from diffkit.eval.edges import edge_scores

    def score(images, labels):
        rows = torch.arange(images.shape[0]) % len(hints)
        edges = edge_scores(images, hints, rows, src.pipe.model.hint_config)
        return evaluator.score_images(images, labels) | {"edges": edges}

    return score


def _open(request: EvalRequest, settings: Settings, dev, report: Reporter) -> Source:
    """The source, a model ready to sample: steered by the hints and compiled as asked."""
    src = Source.open(request.source, request.dataset, request.n, dev, request.use_ema)
    if src.pipe is not None:
        src.pipe = autoguided_by(src.pipe, request.guide_model, dev, request.use_ema)
        swept = (request.sweep or "").startswith("guidance")
        src.pipe = banded_by(src.pipe, guidance_interval(request.guidance_interval),
                             request.guidance != 1.0 or swept)  # fmt: skip
        src.pipe, src.hints = request.control.steer(src.pipe, settings.data_dir)
    elif request.guide_model is not None or request.guidance_interval is not None:
        raise UsageError("--guide-model and --guidance-interval guide a model as it samples, "
                         "not saved samples")  # fmt: skip
    elif request.control.hint is not None:
        raise UsageError("--hint scores a ControlNet run as it samples, not saved samples")
    if src.pipe is not None:
        src.pipe = src.pipe.compiled(settings.compile_with, report.warning)
    elif request.compile:
        raise UsageError("--compile applies to a model that samples, not to saved samples")
    return src


def _conditioning(pipe, hints, n: int):
    """(labels, cond) of ``n`` images: every class equally often for a class-conditional
    model, or with hints each hint (cycling) and its source class."""
    from diffkit.methods.pipeline import cycle_labels

    if hints is None:
        return cycle_labels(pipe.num_classes, n), None
    from diffkit.methods.controlnet import hinted_batch

    labels, cond, _ = hinted_batch(pipe, hints, n)
    return labels, cond


def _options(pipe, sampler: str, given: dict[str, Any]) -> dict[str, Any]:
    """The sampler options of ``given`` that ``sampler`` reads, those set."""
    return {k: v for k, v in given.items() if k in pipe.reads(sampler) and v is not None}


def _generate(src: Source, request: EvalRequest, sampler: str, steps: int, report: Reporter):
    """(images, labels, what the report records of the sampling) of ``request.n`` images."""
    import time

    from diffkit.samplers.registry import sampler_spec

    n, r, pipe, hints = request.n, request, src.pipe, src.hints
    steps = check_steps(pipe, sampler, steps)
    labels, cond = _conditioning(pipe, hints, n)
    total = progress_total(sampler, steps, n, r.batch_size)
    options = _options(pipe, sampler, {"eta": r.eta, "spacing": r.spacing, "rtol": r.rtol,
                                       "atol": r.atol})  # fmt: skip
    with report.steps(f"{sampler}-{steps}, {n} images", total) as advance:
        start = time.perf_counter()
        result = pipe.sample(n, sampler=sampler, steps=steps, seed=r.seed,
                             batch_size=r.batch_size, on_step=advance, labels=labels, cond=cond,
                             guidance=r.guidance, **options)  # fmt: skip
        wall = time.perf_counter() - start
    spec = sampler_spec(sampler)
    info = {"sampler": sampler, "steps": None if spec.adaptive else steps,
            "nfe": result.nfe, "eta": r.eta,
            **({"spacing": r.spacing} if "spacing" in options else {}),
            **({"rtol": r.rtol, "atol": r.atol} if "rtol" in spec.options else {}),
            "sample_seconds": wall, "ms_per_image": 1000 * wall / n}  # fmt: skip
    if labels is not None or hints is not None or pipe.guide is not None:
        info["guidance"] = r.guidance
    if pipe.guidance_interval is not None:
        info["guidance_interval"] = list(pipe.guidance_interval)
    return result.images, labels, info


@dataclass
class _Plan:
    key: str  # "steps", "guidance" or "control_scale"
    samplers: list[str]
    settings: list[Setting]


def _sweep_plan(src: Source, request: EvalRequest) -> _Plan:
    """Step counts at ``guidance`` (for a conditional model), or guidance scales at
    ``steps`` (default: the first sampler's default steps, T for ancestral sampling)."""
    from diffkit.eval.sweep import Setting, parse_sweep
    from diffkit.samplers.registry import ancestral, fixed_step

    if src.pipe is None:
        raise UsageError("--sweep needs a run or checkpoint, not saved samples")
    try:
        key, values = parse_sweep(request.sweep or "")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    pipe, hints, samplers, steps = src.pipe, src.hints, request.samplers, request.steps
    if samplers is None:
        walk = ancestral()  # a DDPM sweeps ancestral sampling beside its default sampler
        samplers = (f"{walk},{pipe.DEFAULT_SAMPLER}" if walk in pipe.SAMPLERS
                    else pipe.DEFAULT_SAMPLER)  # fmt: skip
    names = [s.strip() for s in samplers.split(",") if s.strip()]
    sweepable = fixed_step(pipe.SAMPLERS)  # an adaptive solver has no step count to sweep
    bad = [s for s in names if s not in sweepable]
    if bad or not names:
        raise UsageError(f"--samplers: cannot sweep {', '.join(bad) or '(none)'} here; use "
                         f"{','.join(sweepable)}")  # fmt: skip
    conditional = pipe.num_classes is not None or hints is not None or pipe.guide is not None
    w = request.guidance if conditional else None
    if key == "guidance":
        if not conditional:
            raise UsageError("--sweep guidance=... needs a class-conditional model or "
                             "--guide-model")  # fmt: skip
        s = check_steps(pipe, names[0], steps)
        return _Plan(key, names, [Setting(s, v) for v in values])
    if key == "control_scale":
        if hints is None:
            raise UsageError("--sweep control_scale=... needs a ControlNet run and --hint")
        s = check_steps(pipe, names[0], steps)
        return _Plan(key, names, [Setting(s, w, v) for v in values])
    for s in values:
        check_steps(pipe, names[0], int(s))
    return _Plan(key, names, [Setting(int(s), w) for s in values])


def _sweep_line(p: SweepPoint) -> str:
    """One point of a sweep as it is reported when measured."""
    w = f" w={p.guidance:g}" if p.guidance is not None else ""
    w += f" control={p.control_scale:g}" if p.control_scale is not None else ""
    f1 = f"  edge F1 {p.metrics['edges']['f1']:.3f}" if "edges" in p.metrics else ""
    acc = f"{p.metrics['class_accuracy']['all']:.3f}" if "class_accuracy" in p.metrics else "-"
    return (f"{p.sampler:>5} {p.steps:>5} steps{w}: FID {p.metrics['fid']:8.3f}  "
            f"KID {p.metrics['kid']:9.4g}  acc {acc}{f1}  {p.wall_seconds:8.1f} s")  # fmt: skip


def _run_sweep(src: Source, evaluator: Evaluator, plan: _Plan, request: EvalRequest,
               folder: Path, common: dict[str, Any], report: Reporter) -> SweepResult:  # fmt: skip
    """Sample and score every (sampler, setting) of ``plan`` from the same noise; write
    ``folder``/sweep.json, sweep.png and the points' grids."""
    from diffkit.data.registry import class_names, class_names_of
    from diffkit.eval.sweep import plot_sweep, run_sweep
    from diffkit.methods.controlnet import with_control
    from diffkit.runs.layout import write_json

    n, batch_size, pipe = request.n, request.batch_size, src.pipe
    labels, cond = _conditioning(pipe, src.hints, n)
    given = {"eta": request.eta, "spacing": request.spacing}

    def sample(sampler: str, s: Setting):
        w = s.guidance
        tag = f"{sampler}-{s.steps}" + (f" w={w:g}" if w is not None else "")
        steered = pipe
        if s.control_scale is not None:
            tag += f" control={s.control_scale:g}"
            steered = with_control(pipe, replace(pipe.model.control, scale=s.control_scale))
        with report.steps(tag, progress_total(sampler, s.steps, n, batch_size)) as advance:
            result = steered.sample(n, sampler=sampler, steps=s.steps, seed=request.seed,
                                    **_options(pipe, sampler, given), batch_size=batch_size,
                                    on_step=advance, labels=labels, cond=cond,
                                    guidance=1.0 if w is None else w)  # fmt: skip
        return result.images, labels

    floor = evaluator.floor(n)
    report.info(f"real floor at n={n}: FID {floor['fid']:.3f}")
    names = (class_names_of(evaluator.data) if evaluator.data is not None
             else class_names(evaluator.dataset))  # fmt: skip
    points = run_sweep(sample, _scorer(evaluator, src), plan.samplers, plan.settings,
                       folder, class_names=names,
                       on_point=lambda p: report.info(_sweep_line(p)))  # fmt: skip
    record = common | {"n": n, "eta": request.eta, "spacing": request.spacing,
                       "swept": plan.key, "floor": floor,
                       "points": [p.as_dict() for p in points]}  # fmt: skip
    write_json(folder / "sweep.json", record)
    plot_sweep(points, floor["fid"], folder / "sweep.png", key=plan.key,
               run=source_name(request.source), features=request.features,
               feature_sha256=common["feature_sha256"])  # fmt: skip
    return SweepResult(folder, record, points)
