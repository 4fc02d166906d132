"""``diffkit sample``: draw images from a model into a samples folder::

    from diffkit.app.sample import SampleRequest, Sampling, sample
    from diffkit.config.settings import Settings

    out = sample(SampleRequest(Path("runs/ddpm/RUN"), Sampling("dpm++2m", 20), n=64),
                 Settings())
    out.folder  # grid.png, samples-00000.safetensors, sample.json

The folder appears only when it is complete (:class:`~diffkit.runs.samples.SampleWriter`).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffkit.app.common import (
    CacheRequest,
    ControlRequest,
    autoguided_by,
    banded_by,
    check_steps,
    guidance_interval,
    model_class_names,
    parse_classes,
    progress_total,
)
from diffkit.app.report import QUIET, Reporter
from diffkit.errors import UsageError
from diffkit.samplers.registry import sampler_spec

if TYPE_CHECKING:
    from collections.abc import Callable

    from diffkit.config.settings import Settings
    from diffkit.methods.pipeline import Pipeline


@dataclass(frozen=True)
class Sampling:
    """How to integrate: the sampler (None: the model's default), its steps (None: the
    sampler's default on this model) and the options a sampler may read."""

    sampler: str | None = None
    steps: int | None = None
    eta: float = 0.0
    spacing: str | None = None
    variance: str | None = None
    rtol: float = 1e-3
    atol: float = 1e-3

    def options(self) -> dict[str, Any]:
        return {"eta": self.eta, "spacing": self.spacing, "variance": self.variance,
                "rtol": self.rtol, "atol": self.atol}  # fmt: skip


@dataclass(frozen=True)
class SampleRequest:
    """``n`` images (None: 64, or 10 per class with ``grid_per_class``, or one per hint) of
    ``classes`` (``--class`` values) from ``source`` (a run, checkpoint, diffusers folder or
    ``hf:`` id) into ``out`` (None: a fresh ``RUN/samples/TAG-seedSEED``)."""

    source: Path
    sampling: Sampling = field(default_factory=Sampling)
    n: int | None = None
    classes: tuple[str, ...] = ()
    guidance: float = 1.0
    grid_per_class: bool = False
    seed: int | None = None
    batch_size: int = 256
    out: Path | None = None
    overwrite: bool = False
    cache: CacheRequest = field(default_factory=CacheRequest)
    hint: ControlRequest = field(default_factory=ControlRequest)
    use_ema: bool = True
    guide_model: Path | None = None  # autoguidance: a weaker version of the model
    guidance_interval: str | None = None  # LO:HI: guide only where sigma lies in (LO, HI]


@dataclass(frozen=True)
class SampleOutput:
    """The folder written and what it took; ``meta`` is its sample.json."""

    folder: Path
    meta: dict[str, Any]
    summary: str  # one line: images, sampler, steps or evaluations, time, device


@dataclass
class _Plan:
    """A checked request: the pipeline and everything the sampling loop needs."""

    pipe: Pipeline
    device: Any
    n: int
    labels: Any  # (n,) or None
    cond: Any  # the hint condition or None
    hints: Any
    sampler: str
    steps: int
    cache: Any  # CacheConfig or None
    deep_cache: Any  # DeepCache or None
    tag: str
    grid: dict[str, Any]


def sample(req: SampleRequest, settings: Settings, report: Reporter = QUIET) -> SampleOutput:
    """Draw the images ``req`` asks for and publish their folder: grid.png (up to 256),
    samples-NNNNN.safetensors shards and sample.json. UsageError for a request that does
    not fit the model; nothing is left behind on failure or Ctrl-C."""
    from diffkit.runs.layout import check_writable

    plan = _plan(req, settings)
    out = req.out or default_out(req.source, f"{plan.tag}-seed{_seed(req)}")
    _check_out(out, req.overwrite)
    check_writable(out.parent)
    plan.pipe = plan.pipe.compiled(settings.compile_with, report.warning)
    meta = _write(req, settings, plan, out, report)
    spec = sampler_spec(plan.sampler)
    what = f"{meta['nfe']:g} evaluations" if spec.adaptive else f"{plan.steps} steps"
    if plan.cache is not None:
        what += f", DeepCache {meta['full_nfe']:g} full"
    wall = meta["wall_seconds"]
    summary = (f"{plan.n} images, {plan.sampler} {what}: {wall:.2f} s "
               f"({1000 * wall / plan.n:.1f} ms/image) on {plan.device}")  # fmt: skip
    return SampleOutput(out, meta, summary)


def _seed(req: SampleRequest) -> int:
    return 0 if req.seed is None else req.seed


def _plan(req: SampleRequest, settings: Settings) -> _Plan:
    """Load the model and check the request against it, in the order a user fixes things:
    the model, its hint and classes, the sampler and steps, its options, the cache."""
    from diffkit.methods.load import load_pipeline
    from diffkit.training.hardware import resolve_device

    if settings.compile and req.cache.interval > 1:
        raise UsageError("--compile and --cache-interval > 1 exclude each other: DeepCache "
                         "changes the network from call to call")  # fmt: skip
    dev = resolve_device(settings.device)
    pipe = load_pipeline(req.source, dev, use_ema=req.use_ema)
    pipe = autoguided_by(pipe, req.guide_model, dev, req.use_ema)
    pipe = banded_by(pipe, guidance_interval(req.guidance_interval), req.guidance != 1.0)
    pipe, hints = req.hint.steer(pipe, settings.data_dir)
    n = req.n or (len(hints) if hints is not None else None)
    classes = list(req.classes)
    cfg = req.guidance != 1.0 and req.guide_model is None  # classifier-free: needs classes
    if cfg and not classes and not req.grid_per_class and hints is None:
        classes = ["all"]
    hinted_ = hints is not None

    def room(total: int, labelled: bool) -> None:  # before labels or hints are made
        _check_room(req, pipe, total, labelled or (hinted_ and pipe.num_classes is not None),
                    hinted_)  # fmt: skip

    labels, n = sample_labels(pipe, classes, req.grid_per_class, n, room)
    cond = None
    if hints is not None:
        from diffkit.methods.controlnet import hinted_batch

        labels, cond, _ = hinted_batch(pipe, hints, n, labels)
    sampler, steps = _check_sampling(pipe, req.sampling)
    cache, deep_cache = _cache(pipe, req.cache, sampler, steps)
    grid = class_grid_options(pipe, labels) if req.grid_per_class else {}
    tag = _tag(req, sampler, steps, labels is not None, hints is not None)
    return _Plan(pipe, dev, n, labels, cond, hints, sampler, steps, cache, deep_cache, tag, grid)


def _check_sampling(pipe: Pipeline, sampling: Sampling) -> tuple[str, int]:
    """(sampler, steps) for ``pipe``: the model's default sampler and steps where none is
    named; UsageError for a sampler, step count or option the model does not take."""
    sampler = sampling.sampler or pipe.DEFAULT_SAMPLER
    steps = check_steps(pipe, sampler, sampling.steps)
    try:
        pipe.options(sampler, sampling.options())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return sampler, steps


def _cache(pipe: Pipeline, req: CacheRequest, sampler: str, steps: int):
    """(CacheConfig, DeepCache) for ``req``, or (None, None) when it is off."""
    if req.interval <= 1:
        return None, None
    from diffkit.accel.deepcache import DeepCache

    cache = req.config()
    try:
        return cache, DeepCache.of(pipe, cache, sampler, steps)  # refused now, if at all
    except ValueError as exc:
        raise UsageError(f"--cache-*: {exc}") from None


def _tag(req: SampleRequest, sampler: str, steps: int, labelled: bool, hinted_: bool) -> str:
    """The default folder name's head: ``ddim-50``, then what sets these images apart."""
    s, spec = req.sampling, sampler_spec(sampler)
    tag = spec.tag(steps)
    tag += f"-eta{s.eta:g}" if "eta" in spec.options and s.eta else ""
    if req.guide_model is not None:
        tag += f"-ag{req.guidance:g}"  # autoguided with scale w
    elif labelled or req.guidance != 1.0:
        tag += f"-w{req.guidance:g}"
    if req.guidance_interval is not None:
        lo, hi = guidance_interval(req.guidance_interval)  # type: ignore[misc]
        tag += f"-i{lo:g}-{hi:g}"
    tag += f"-cs{req.hint.scale:g}" if hinted_ and req.hint.scale != 1.0 else ""
    tag += f"-cache{req.cache.interval}" if req.cache.interval > 1 else ""
    return tag


def _write(req: SampleRequest, settings: Settings, plan: _Plan, out: Path, report: Reporter):
    """Sample batch by batch into a SampleWriter and publish it; sample.json's contents."""
    import torch

    from diffkit.runs.samples import SampleWriter

    writer = SampleWriter(out, overwrite=req.overwrite, **plan.grid)
    nfes: list[int] = []
    dc = plan.deep_cache
    try:
        total = progress_total(plan.sampler, plan.steps, plan.n, req.batch_size)
        label = f"{plan.tag}, {plan.n} images"
        with report.steps(label, total) as advance, dc or nullcontext():
            start = time.perf_counter()
            for batch in plan.pipe.sample_batches(
                plan.n, sampler=plan.sampler, steps=plan.steps, **req.sampling.options(),
                seed=_seed(req), batch_size=req.batch_size, labels=plan.labels,
                cond=plan.cond, guidance=req.guidance, on_step=advance,
                on_batch_start=dc.reset if dc is not None else None,
            ):  # fmt: skip
                writer.add(batch.images, batch.labels)
                nfes.append(batch.nfe)
            if plan.device.type == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
        meta = _meta(req, settings, plan, sum(nfes) / len(nfes), wall)
        writer.publish(meta, nrow=None)
        meta |= {"files": writer.files}  # as sample.json has it
    except BaseException:
        writer.discard()  # nothing half-written is left; an older --out folder is intact
        raise
    return meta


def _meta(req: SampleRequest, settings: Settings, plan: _Plan, nfe: float, wall: float):
    """sample.json: what was drawn, how, and what it cost."""
    pipe, spec, s, hints = plan.pipe, sampler_spec(plan.sampler), req.sampling, plan.hints
    labels = plan.labels
    guided = labels is not None or hints is not None or req.guide_model is not None
    return {
        "source": str(req.source),
        # what the images imitate (a diffusers model does not say)
        "data": pipe.config.data.model_dump(mode="json") if pipe.config else None,
        "sampler": plan.sampler,
        "steps": None if spec.adaptive else plan.steps,
        "nfe": nfe,
        "full_nfe": plan.deep_cache.mean_full if plan.deep_cache is not None else nfe,
        "cache": asdict(plan.cache) if plan.cache is not None else None,
        "rtol": s.rtol if "rtol" in spec.options else None,
        "atol": s.atol if "atol" in spec.options else None,
        "eta": s.eta,
        "spacing": s.spacing or getattr(pipe.model, "spacing", None),
        "variance": s.variance or getattr(pipe.model, "variance", None),
        "n": plan.n,
        "classes": sorted(set(labels.tolist())) if labels is not None else None,
        "guidance": req.guidance if guided else None,
        "guide_model": str(req.guide_model) if req.guide_model is not None else None,
        "guidance_interval": list(pipe.guidance_interval) if pipe.guidance_interval else None,
        "hint": req.hint.hint,
        "control": req.hint.recorded() if hints is not None else None,
        "seed": _seed(req),
        "ema": req.use_ema if pipe.config is not None else None,  # diffusers: one set
        "device": str(plan.device),
        "compiled": pipe.net.active if settings.compile else None,  # False: fell back
        "batch_size": req.batch_size,
        "wall_seconds": wall,
        "ms_per_image": 1000 * wall / plan.n,
    }


def default_out(source: Path, name: str) -> Path:
    """``<run>/samples/<name>`` for a run or a file inside one, else ``./samples/<name>``;
    a numeric suffix keeps earlier outputs from being overwritten."""
    from diffkit.runs.layout import run_folder_of

    run = run_folder_of(source)
    base = (run if (run / "config.json").is_file() else Path.cwd()) / "samples" / name
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def sample_labels(pipe: Pipeline, classes: list[str], grid_per_class: bool, n: int | None,
                  check: Callable[[int, bool], None] | None = None):  # fmt: skip
    """(labels (n,) or None, n) for the requested classes: images cycle through them, or
    ``n`` (default 10) of each, class by class, for a class grid. ``check(total,
    labelled)`` sees the count before any label is made (it may refuse it)."""
    import torch

    check = check or (lambda total, labelled: None)
    if not classes and not grid_per_class:
        check(n or 64, False)
        return None, n or 64
    k = pipe.num_classes
    dataset = pipe.config.data.dataset if pipe.config is not None else "this model"
    picked = parse_classes(classes or ["all"], dataset, k, model_class_names(pipe))
    if grid_per_class:  # n images of each class (default 10), class by class
        check(len(picked) * (n or 10), True)
        labels = torch.tensor(picked).repeat_interleave(n or 10)
        return labels, labels.numel()
    n = n or 64
    check(n, True)
    return torch.tensor(picked)[torch.arange(n) % len(picked)], n


def class_grid_options(pipe: Pipeline, labels) -> dict[str, Any]:
    """SampleWriter's options for a class grid: one column per requested class, headed by
    its name, as the training previews are, with as many of each class as fit in
    GRID_MAX images (the shards still hold all of them)."""
    from diffkit.runs.samples import GRID_MAX

    k = len(set(labels.tolist()))
    per = labels.numel() // k
    return {"class_names": model_class_names(pipe), "grid_rows": min(per, max(1, GRID_MAX // k))}


def _check_out(out: Path, overwrite: bool) -> None:
    """An existing --out is replaced only when asked to, and only if it is a samples
    folder (never a run folder or some other file)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if not overwrite:
        raise UsageError(f"--out {out} already exists; pass --overwrite to replace it, or "
                         "leave --out unset for a fresh folder")  # fmt: skip
    if any(out.iterdir()) and not (out / "sample.json").is_file():
        raise UsageError(f"--out {out} is not a samples folder (no sample.json); "
                         "--overwrite replaces only samples folders")  # fmt: skip


def _check_room(req: SampleRequest, pipe: Pipeline, n: int, labelled: bool,
                hinted_: bool) -> None:  # fmt: skip
    """Refuse a request whose output cannot fit on disk, or one batch of it in memory
    (guidance doubles the network's rows; labels and hints are held for all ``n``)."""
    from diffkit.app.room import check_images_disk, check_sampling_memory, image_shape_of
    from diffkit.runs.samples import GRID_MAX

    parent = (req.out or default_out(req.source, "x")).parent
    check_images_disk(n, image_shape_of(pipe), parent, grid=min(n, GRID_MAX))
    guided = req.guidance != 1.0 and (labelled or hinted_)
    check_sampling_memory(pipe, n, req.batch_size, rows=2 if guided else 1, labelled=labelled,
                          hinted=hinted_)  # fmt: skip
