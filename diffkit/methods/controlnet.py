"""ControlNet over a frozen diffkit DDPM or rectified flow (pixel or latent UNet).

Training (:func:`train_controlnet`): the base run is loaded once (its EMA weights; for a
latent model, its autoencoder), frozen and kept out of the optimizer; the edge map of every
training image is computed once and packed beside it
(:func:`~diffkit.objectives.controlnet.pack_hints`); the loss is the base's own, with the
hint as extra input (or an L1 reconstruction baseline). The checkpoint holds the
ControlNet (and an unlocked decoder) only, plus the base's path and sha256 in its config,
or the base's weights themselves under ``base.`` when embedded.

Sampling (:func:`load_control_pipeline`): the base's pipeline with the controlled network
swapped in. Hints travel in :class:`~diffkit.models.conditioning.Cond` ``hint``, so every
sampler and classifier-free guidance work unchanged (the hint goes to both halves).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import Tensor

from diffkit.config.resolve import validate
from diffkit.config.run import BaseRef, ControlNetRunConfig, GenerativeRunConfig, HintConfig
from diffkit.config.settings import Settings
from diffkit.data.edges import edge_maps
from diffkit.data.hints import Hints
from diffkit.data.loader import TensorBatches
from diffkit.data.registry import DataError, ImageData, image_shape, load_dataset
from diffkit.methods.common import (
    finish_run,
    lock_for_resume,
    open_run,
    report_skipped,
    training_evaluator,
)
from diffkit.methods.latent import encode_dataset
from diffkit.methods.pipeline import Pipeline, check_weights, load_weights
from diffkit.methods.reflow import file_sha256
from diffkit.methods.registry import method_objective
from diffkit.methods.restore import (
    check_parts,
    generative_config,
    load_run_pipeline,
    pipeline_from_parts,
    pipeline_of,
)
from diffkit.models.conditioning import Cond
from diffkit.models.contract import DDPMModel, FlowModel, Model
from diffkit.nn.controlnet import ControlledUNet, ControlNet
from diffkit.nn.unet import UNet
from diffkit.objectives.controlnet import HintedObjective, ReconObjective, pack_hints
from diffkit.runs.checkpoint import (
    CheckpointError,
    CheckpointHeader,
    load_checkpoint,
    read_checkpoint_header,
    resolve_checkpoint,
)
from diffkit.runs.layout import RunDir
from diffkit.runs.plots import save_grid
from diffkit.training import TrainEvent, TrainResult, train
from diffkit.training.hardware import resolve_device, resolve_precision
from diffkit.training.resume import check_resume

BASE = "base"  # the prefix of an embedded base's tensors: base.ema.*, base.vae.*


# ---------------------------------------------------------------------------------------
# The base model


def base_reference(path: Path) -> BaseRef:
    """The run or checkpoint ``path`` as a ControlNet's base: its file, sha256 and config.
    It must be a generative diffkit model with a UNet (CheckpointError otherwise)."""
    file = resolve_checkpoint(path)
    header = read_checkpoint_header(file)
    if header.config.get("method") == "controlnet":
        raise CheckpointError(
            f"{path} is a ControlNet; its base is {header.config['base']['source']}"
        )
    cfg = generative_config(header.config, path)
    if cfg.model.kind != "unet":
        raise CheckpointError(f"{path} denoises with an {cfg.model.kind}; a ControlNet copies "
                              "a UNet's encoder (train the base with a UNet)")  # fmt: skip
    return BaseRef(source=str(file.resolve()), sha256=file_sha256(file), config=header.config)


def load_base(ref: BaseRef, device: torch.device, embedded: Path | None = None) -> Pipeline:
    """The base's pipeline: from the ``base.*`` tensors of the checkpoint ``embedded``, or
    from its own file, whose sha256 must still be the one recorded (a base trained further
    or replaced would silently change what the ControlNet steers)."""
    cfg = generative_config(ref.config, "the ControlNet's base")
    if embedded is not None:
        header = read_checkpoint_header(embedded)
        ema, vae = header.section(f"{BASE}.ema"), header.section(f"{BASE}.vae")
        check_parts(cfg, ema, vae, embedded, f"{BASE}.ema")
        ckpt = load_checkpoint(embedded, prefixes=(BASE,))
        tensors = ckpt.section(BASE)
        weights = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        vae_w = {k[4:]: v for k, v in tensors.items() if k.startswith("vae.")}
        return pipeline_from_parts(cfg, weights, vae_w, device, embedded)
    file = Path(ref.source)
    if not file.is_file():
        raise CheckpointError(f"the base checkpoint {file} is gone; restore it, or train the "
                              "ControlNet with --embed-base to carry it along")  # fmt: skip
    digest = file_sha256(file)
    if digest != ref.sha256:
        raise CheckpointError(f"the base checkpoint {file} changed since the ControlNet was "
                              f"trained (sha256 {digest[:12]}, expected {ref.sha256[:12]}); "
                              "restore that file or retrain the ControlNet")  # fmt: skip
    return load_run_pipeline(file, file, read_checkpoint_header(file), device)


def base_tensors(ref: BaseRef) -> dict[str, Tensor]:
    """The base's EMA weights and autoencoder as ``base.ema.*`` / ``base.vae.*``."""
    ckpt = load_checkpoint(Path(ref.source), prefixes=("ema", "vae"))
    return {f"{BASE}.{k}": v for k, v in ckpt.tensors.items()}


def hint_factor(base: GenerativeRunConfig) -> int:
    """How much larger a hint (the image) is than the UNet's input conv output."""
    _, size = image_shape(base.data)
    unet = base.model
    return size * unet.patch_size // unet.image_size  # type: ignore[union-attr]


def hint_shape(base: GenerativeRunConfig) -> tuple[int, int, int]:
    _, size = image_shape(base.data)
    return (1, size, size)


def build_controlled(base: Pipeline, cfg: ControlNetRunConfig) -> ControlledUNet:
    """A fresh ControlNet over ``base``'s (frozen) UNet."""
    unet = base.net
    assert isinstance(unet, UNet) and base.config is not None  # base_reference checked it
    control = ControlNet.from_unet(unet, hint_channels=1, hint_factor=hint_factor(base.config))
    return ControlledUNet(unet, control, unlock_decoder=cfg.unlock_decoder)


# ---------------------------------------------------------------------------------------
# Sampling


@dataclass(frozen=True)
class Control:
    """How a ControlNet steers sampling: ``scale`` multiplies its residuals; it acts while
    the fraction of the way from noise to data lies in [``start``, ``end``] (read from the
    timestep, so every sampler and step count agree; diffusers counts steps instead, the
    same on a uniform grid up to one step); ``guess`` (guess mode) weights shallow
    residuals less and keeps the hint out of the unconditional half of guidance."""

    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    guess: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end <= 1:
            raise ValueError(f"control start and end need 0 <= start <= end <= 1, got "
                             f"{self.start} and {self.end}")  # fmt: skip
        if not self.scale >= 0:
            raise ValueError(f"control scale must be >= 0, got {self.scale}")


@dataclass(eq=False, kw_only=True)
class _Controlled:
    """What a controlled model adds to its family's: hints in ``cond.hint``."""

    control: Control = Control()
    hint_config: HintConfig = field(default_factory=HintConfig)  # how hints are made
    blank_start: bool = False  # the recon baseline: one step from a blank (zero) input

    def progress(self, t: Tensor) -> Tensor:  # (B,) the way from noise (0) to data (1)
        raise NotImplementedError

    def raw(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> Tensor:
        labels = None if cond is None else cond.labels
        hint = None if cond is None else cond.hint
        if hint is None:
            return self.net(x, t, labels)  # type: ignore[attr-defined]
        c = self.control
        if c.scale == 0:
            return self.net(x, t, labels)  # type: ignore[attr-defined]
        rows: float | Tensor = c.scale  # per row (B,) once a window or a hint scale applies
        if (c.start, c.end) != (0.0, 1.0):
            p = self.progress(t)
            rows = c.scale * ((p >= c.start - 1e-6) & (p <= c.end + 1e-6)).to(x.dtype)
        if cond.hint_scale is not None:
            rows = rows * cond.hint_scale.to(x.dtype)
        # The plain case never reads a tensor back (no host sync on a GPU); otherwise a
        # batch with no control anywhere skips the ControlNet: the base alone.
        if isinstance(rows, Tensor) and not bool(rows.any()):
            return self.net(x, t, labels)  # type: ignore[attr-defined]
        return self.net(x, t, labels, hint, rows, c.guess)  # type: ignore[attr-defined]

    def unconditional(self, cond: Cond) -> Cond:
        """Guidance's partner: the null class with the same hint (the hint goes to both
        halves); in guess mode, or without class labels (an unconditional base, or no
        class asked for), the partner has no control, so guidance steers by the hint."""
        labelled = cond.labels is not None and self.num_classes is not None  # type: ignore[attr-defined]
        if labelled and self.conditioning == "class":  # type: ignore[attr-defined]
            partner = super().unconditional(cond)  # type: ignore[misc]
            if not self.control.guess:
                return partner
        else:
            partner = cond
        if partner.hint is None:
            raise ValueError("this model is unconditional; guidance needs a hint")
        return replace(partner, hint_scale=torch.zeros(partner.hint.shape[0],
                                                       device=partner.hint.device))  # fmt: skip

    def initial(self, noise: Tensor) -> Tensor:
        return torch.zeros_like(noise) if self.blank_start else noise

    def max_steps(self) -> int:
        return 1 if self.blank_start else super().max_steps()  # type: ignore[misc]

    def default_steps(self, sampler: str) -> int:
        return 1 if self.blank_start else super().default_steps(sampler)  # type: ignore[misc]


@dataclass(eq=False, kw_only=True)
class ControlledDDPM(_Controlled, DDPMModel):
    def progress(self, t: Tensor) -> Tensor:
        return 1 - (t.float() + 1) / self.schedule.num_steps


@dataclass(eq=False, kw_only=True)
class ControlledFlow(_Controlled, FlowModel):
    def progress(self, t: Tensor) -> Tensor:
        return t.float() / self.time_scale


CONTROLLED: dict[str, type] = {c.family: c for c in (ControlledDDPM, ControlledFlow)}
"""The controlled model of each family, by the family its class extends."""


def controlled_pipeline(base: Pipeline, net: ControlledUNet, cfg: ControlNetRunConfig) -> Pipeline:
    """``base`` with ``net`` in place of its network, taking hints."""
    kind = CONTROLLED[base.model.family]
    own = {f.name: getattr(base.model, f.name) for f in fields(base.model) if f.init}
    model = kind(**own | {"net": net, "name": f"ControlNet on {base.model.name}",
                          "hint_config": cfg.hint,
                          "blank_start": cfg.objective == "recon"})  # fmt: skip
    return pipeline_of(model, base.device, base.config)


def with_control(pipe: Pipeline, control: Control) -> Pipeline:
    """The same pipeline steered by ``control``."""
    if not is_controlled(pipe.model):
        raise ValueError(f"this {pipe.model.name} model takes no hint; a ControlNet run does")
    return replace(pipe, model=replace(pipe.model, control=control))


def is_controlled(model: Model) -> bool:
    return isinstance(model, _Controlled)


def load_control_pipeline(
    file: Path, header: CheckpointHeader, device: torch.device, use_ema: bool = True
) -> Pipeline:
    """A ControlNet checkpoint and its base as one pipeline (see :func:`load_base`)."""
    try:
        cfg = validate(ControlNetRunConfig, header.config)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint config: {exc}") from None
    embedded = file if cfg.base.embedded else None
    base = load_base(cfg.base, device, embedded)
    section = "ema" if use_ema else "model"
    net = build_controlled(base, cfg)
    check_weights(net, header.section(section), file, f"{section}.")
    load_weights(net, load_checkpoint(file, prefixes=(section,)).section(section), file)
    return controlled_pipeline(base, net.to(device).eval(), cfg)


def hint_condition(hints: Tensor) -> Cond:
    """Hints (n, 1, H, W) in [0, 1] as a condition (class labels join it when sampling)."""
    return Cond(hint=hints.float())


# ---------------------------------------------------------------------------------------
# Training


def _training_rows(cfg: ControlNetRunConfig, data: ImageData, codec) -> ImageData:
    """The training set as packed (target, hint) rows: hints from the images, targets the
    images or their latents."""
    h = cfg.hint
    hints = edge_maps(data.images, h.kind, h.low, h.high, h.sigma)  # (N, 1, H, W)
    x = encode_dataset(codec, data).images if codec is not None else data.images
    return ImageData(pack_hints(x, hints), data.labels, data.class_names)


def _objective(cfg: ControlNetRunConfig, base_cfg: GenerativeRunConfig):
    base_cfg = base_cfg.model_copy(
        update={"train": base_cfg.train.model_copy(update={"cond_drop": cfg.train.cond_drop})}
    )
    kind = ReconObjective if cfg.objective == "recon" else HintedObjective
    return kind(method_objective(base_cfg), base_cfg.sample_shape, hint_shape(base_cfg))


def train_controlnet(
    cfg: ControlNetRunConfig,
    settings: Settings,
    *,
    resume: RunDir | None = None,
    classifier: Path | None = None,
    on_event: Callable[[TrainEvent], None] = lambda e: None,
    on_run_dir: Callable[[RunDir], None] = lambda r: None,
) -> tuple[RunDir, TrainResult]:
    """Train (or resume) a ControlNet; every input is checked before the run folder is
    written. A base that moved or changed is a CheckpointError, unless embedded. With
    ``train.eval_every`` the EMA model is scored (FID with ``classifier``, else the most
    accurate qualified one for the dataset, and edge consistency) on the first test images'
    hints."""
    device = resolve_device(settings.device)
    autocast_dtype = resolve_precision(cfg.train.precision, device)
    with ExitStack() as held:
        if resume is not None:
            lock_for_resume(held, resume)
        embedded = resume.last_checkpoint if resume is not None and cfg.base.embedded else None
        base = load_base(cfg.base, device, embedded)
        base_cfg = base.config
        assert base_cfg is not None  # a diffkit run
        data = load_dataset(cfg.data, settings.data_dir, "train", download=settings.download)
        report_skipped(data, cfg.data.dataset, on_event)
        if base_cfg.num_classes is not None and data.labels is None:
            raise DataError(f"{cfg.data.dataset} has no labels; the base is class-conditional")
        rows = _training_rows(cfg, data, base.model.codec)
        batches = TensorBatches(rows, cfg.train.batch_size, seed=cfg.train.seed, device=device)
        torch.manual_seed(cfg.train.seed)
        model = build_controlled(base, cfg)
        ckpt = None
        if resume is not None:
            header = read_checkpoint_header(resume.last_checkpoint)
            check_resume(header.tensors, header.train_state, model, cfg.train, world=1,
                         batches=len(batches), source=resume.last_checkpoint)  # fmt: skip
            ckpt = load_checkpoint(resume.last_checkpoint, prefixes=("model", "ema", "optim"))
        extra = base_tensors(cfg.base) if cfg.base.embedded and resume is None else {}
        if embedded is not None:
            extra = load_checkpoint(embedded, prefixes=(BASE,)).tensors
        t = cfg.train
        hints = test_hints(cfg, settings, max(t.preview_n // 2, t.eval_n if t.eval_every else 1))
        evaluate = _evaluation(cfg, settings, base, classifier, hints, on_event)
        step = int(ckpt.train_state["position"]["step"]) if ckpt is not None else None
        run = open_run(settings.runs_dir, "controlnet", cfg, held, resume, step, len(batches))
        on_run_dir(run)
        t0 = time.time()
        result = train(
            model, _objective(cfg, base_cfg), batches, cfg.train, device=device,
            autocast_dtype=autocast_dtype, run=run, run_config=cfg.model_dump(mode="json"),
            resume=ckpt, preview=_preview(cfg, base, run, hints),
            evaluate=evaluate, on_event=on_event,
            extra_tensors=extra, compile_backend=settings.compile_with,
        )  # fmt: skip
        finish_run(run, result, device=device, autocast_dtype=autocast_dtype, model=model,
                   wall_seconds_this_session=time.time() - t0, train_images=len(data),
                   base=cfg.base.source, base_sha256=cfg.base.sha256)  # fmt: skip
    return run, result


def test_hints(cfg: ControlNetRunConfig, settings: Settings, n: int) -> Hints:
    """The hints of the first ``n`` test images, with their images and labels."""
    test = load_dataset(cfg.data.model_copy(update={"limit": None}), settings.data_dir, "test",
                        download=settings.download)  # fmt: skip
    images, h = test.images[:n], cfg.hint
    labels = test.labels[:n] if test.labels is not None else None
    return Hints(edge_maps(images, h.kind, h.low, h.high, h.sigma), labels, images)


def hinted_batch(
    pipe: Pipeline, hints: Hints, n: int, labels: Tensor | None = None
) -> tuple[Tensor | None, Cond, Tensor]:
    """For ``n`` images with ``hints`` cycling over them: (labels, the hint condition, which
    hint each image has (n,)). A class-conditional base draws each hint's source class
    unless ``labels`` are given (files carry none: the classes cycle)."""
    rows = torch.arange(n) % len(hints)
    if labels is None and pipe.num_classes:
        labels = hints.labels[rows] if hints.labels is not None else rows % pipe.num_classes
    return labels, hint_condition(hints.maps[rows]), rows


def _evaluation(cfg: ControlNetRunConfig, settings: Settings, base: Pipeline,
                classifier: Path | None, hints: Hints,
                on_event: Callable[[TrainEvent], None]):  # fmt: skip
    """The in-training evaluation: FID (and class accuracy) of ``eval_n`` samples drawn for
    the first test images' hints, and their edge consistency; None when off."""
    t = cfg.train
    if not t.eval_every:
        return None
    from diffkit.eval.edges import edge_scores

    evaluator, names = training_evaluator(cfg.data, settings, base.device, classifier, on_event)
    hints = hints.select(t.eval_n)

    def evaluate(ema_net, epoch: int) -> dict:
        start = time.perf_counter()
        pipe = controlled_pipeline(base, ema_net, cfg)
        labels, cond, rows = hinted_batch(pipe, hints, t.eval_n)
        steps = 1 if cfg.objective == "recon" else t.eval_steps
        images = pipe.sample(t.eval_n, sampler=t.eval_sampler, steps=steps, seed=t.seed,
                             labels=labels, cond=cond).images  # fmt: skip
        scores = evaluator.score_images(images, labels)
        edges = edge_scores(images, hints, rows, cfg.hint)
        keep = ("fid", "kid", "kid_std", "is", "precision", "recall")
        extra = {"class_accuracy": scores["class_accuracy"]["all"]} if labels is not None else {}
        return {k: scores[k] for k in keep} | extra | {
            "edge_f1": edges["f1"], "edge_f1_exact": edges["f1_exact"],
            "sobel_l1": edges["sobel_l1"], "eval_n": t.eval_n,
            "eval_seconds": time.perf_counter() - start, **names,
        }  # fmt: skip

    return evaluate


def _preview(cfg: ControlNetRunConfig, base: Pipeline, run: RunDir, hints: Hints):
    """Hint | sample pairs of the first test images (their own classes for a
    class-conditional base), four pairs a row."""
    k = max(1, cfg.train.preview_n // 2)
    hints = hints.select(k)
    recon = cfg.objective == "recon"
    sampler = base.DEFAULT_SAMPLER if recon else cfg.train.preview_sampler
    steps = 1 if recon else cfg.train.preview_steps

    def preview(ema_net, tag: str) -> Path:
        pipe = controlled_pipeline(base, ema_net, cfg)
        labels, cond, _ = hinted_batch(pipe, hints, k)
        images = pipe.sample(k, sampler=sampler, steps=steps, seed=cfg.train.seed,
                             labels=labels, cond=cond).images  # fmt: skip
        edges = hints.maps.expand_as(images) * 2 - 1  # (k, C, H, W) in [-1, 1]
        pairs = torch.stack([edges, images], dim=1)  # (k, 2, C, H, W)
        path = run.samples / f"{tag}.png"
        save_grid(pairs.flatten(0, 1), path, nrow=8)
        return path

    return preview
