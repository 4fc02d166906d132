"""Training of generative denoisers: DDPMs and rectified flows, on pixels or latents.

One function, :func:`train_generative`, for every such method: the config's type picks the
objective (:class:`DDPMObjective` or :class:`FlowObjective`) and the pipeline that draws
previews and evaluation samples; data loading, resume, latents and the loop are shared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from diffkit.config.run import GenerativeRunConfig
from diffkit.config.settings import Settings
from diffkit.data.batching import make_batches
from diffkit.data.registry import (
    DataError,
    ImageData,
    class_names_of,
    load_dataset,
    with_class_names,
)
from diffkit.eval.features import tensor_digest
from diffkit.methods.common import (
    finish_run,
    lock_for_resume,
    open_run,
    report_skipped,
    training_evaluator,
)
from diffkit.methods.latent import codec_tensors, encode_dataset
from diffkit.methods.pipeline import check_weights, cycle_labels, load_weights
from diffkit.methods.registry import METHODS, method_objective
from diffkit.methods.restore import pipeline_for
from diffkit.nn.build import build_model, check_trainable, meta_model
from diffkit.runs.checkpoint import (
    load_checkpoint,
    read_checkpoint_header,
    resolve_checkpoint,
)
from diffkit.runs.layout import RunDir
from diffkit.runs.plots import save_class_grid, save_grid
from diffkit.training import TrainEvent, TrainResult, train
from diffkit.training.distributed import DistInfo, broadcast_object
from diffkit.training.estimate import small_preset_note
from diffkit.training.hardware import resolve_device, resolve_precision
from diffkit.training.resume import load_resume

if TYPE_CHECKING:
    from diffkit.models.codec import Codec


def objective_for(cfg: GenerativeRunConfig, paired: bool = False,
                  device: torch.device | None = None):  # fmt: skip
    """The training loss of a config's method (:data:`~diffkit.methods.registry.METHODS`);
    a few-step student's consistency loss (:mod:`diffkit.methods.distill`), its teacher
    loaded onto ``device``."""
    if cfg.distill is not None:
        from diffkit.methods.distill import student_objective, teacher_network

        needs = cfg.distill.method == "cd"
        teacher = teacher_network(cfg, device or torch.device("cpu")) if needs else None
        return student_objective(cfg, teacher)
    return method_objective(cfg, paired)


def _load_once_per_host(cfg: GenerativeRunConfig, settings: Settings, dist: DistInfo) -> ImageData:
    """Rank 0 loads (and, if allowed, downloads) first; the others read after a barrier."""
    import torch.distributed as tdist

    if dist.enabled and not dist.is_main:
        tdist.barrier()
    data = load_dataset(cfg.data, settings.data_dir, "train", download=settings.download)
    if dist.enabled and dist.is_main:
        tdist.barrier()
    if cfg.num_classes is not None:
        if data.labels is None:
            raise DataError(
                f"{cfg.data.dataset} has no labels; a class-conditional model needs them"
            )
        if int(data.labels.max()) >= cfg.num_classes:
            raise DataError(
                f"{cfg.data.dataset} has labels up to {int(data.labels.max())}, more than "
                f"model.num_classes={cfg.num_classes}"
            )
    return data


def _training_data(
    cfg: GenerativeRunConfig,
    settings: Settings,
    dist: DistInfo,
    codec: Codec | None,
    pairs: ImageData | None,
    on_event: Callable[[TrainEvent], None],
) -> ImageData:
    """The reflow's pairs, else the dataset (as latents for a latent model)."""
    if pairs is not None:
        return pairs
    data = _load_once_per_host(cfg, settings, dist)
    if dist.is_main:
        report_skipped(data, cfg.data.dataset, on_event)
    return encode_dataset(codec, data, settings.cache_dir) if codec is not None else data


def _initial_model(
    cfg: GenerativeRunConfig, init_from: Path | None
) -> tuple[nn.Module, GenerativeRunConfig]:
    """The network to train: random, or with the weights of the run or checkpoint
    ``init_from`` (its EMA unless ``cfg.init_from`` asks for the raw ones), whose header is
    checked against a meta model before a tensor is read. A fine-tuned run's config
    comes back with the sha256 of the weights it started from."""
    init, prefix = None, cfg.init_from.weights if cfg.init_from is not None else "ema"
    if init_from is not None:
        file = resolve_checkpoint(init_from)
        header = read_checkpoint_header(file)
        check_weights(meta_model(cfg.model), header.section(prefix), init_from, f"{prefix}.")
        init = load_checkpoint(file, prefixes=(prefix,)).section(prefix)
        if cfg.init_from is not None:
            record = cfg.init_from.model_copy(update={"sha256": tensor_digest(init)})
            cfg = cfg.model_copy(update={"init_from": record})
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    model = build_model(cfg.model)
    if init is not None:
        load_weights(model, init, init_from)
    return model, cfg


def _evaluation(
    cfg: GenerativeRunConfig,
    settings: Settings,
    device: torch.device,
    classifier: Path | None,
    codec: Codec | None,
    on_event: Callable[[TrainEvent], None],
) -> Callable[[nn.Module, int], dict] | None:
    """The in-training evaluation callback, or None when ``train.eval_every`` is 0. Loads the
    classifier and the reference features now, so a missing one fails before training.
    A class-conditional model draws every class equally often (guidance 1) and is also
    scored on the classifier's accuracy for the requested classes."""
    if not cfg.train.eval_every:
        return None
    evaluator, names = training_evaluator(cfg.data, settings, device, classifier, on_event)
    t = cfg.train

    def evaluate(ema_net: nn.Module, epoch: int) -> dict:
        start = time.perf_counter()
        labels = cycle_labels(cfg.num_classes, t.eval_n)
        images = (
            pipeline_for(cfg, ema_net, device, codec)
            .sample(
                t.eval_n, sampler=t.eval_sampler, steps=t.eval_steps, seed=t.seed, labels=labels
            )
            .images
        )
        scores = evaluator.score_images(images, labels)
        keep = ("fid", "kid", "kid_std", "is", "precision", "recall")
        extra = {"class_accuracy": scores["class_accuracy"]["all"]} if labels is not None else {}
        return (
            {k: scores[k] for k in keep}
            | extra
            | {"eval_n": t.eval_n, "eval_seconds": time.perf_counter() - start}
            | names
        )

    return evaluate


def train_generative(
    cfg: GenerativeRunConfig,
    settings: Settings,
    *,
    resume: RunDir | None = None,
    dist: DistInfo = DistInfo(),
    classifier: Path | None = None,
    codec: Codec | None = None,
    pairs: ImageData | None = None,
    init_from: Path | None = None,
    on_event: Callable[[TrainEvent], None] | None = None,
    on_run_dir: Callable[[RunDir], None] = lambda r: None,
) -> tuple[RunDir | None, TrainResult]:
    """Train a DDPM or a rectified flow; the run folder is created (or reopened on
    ``resume``) on rank 0. ``on_event`` hears the loop's events; without one, a progress
    bar shows on stderr when it is a terminal (:class:`diffkit.progress.TrainBar`).

    A latent model (``cfg.latent``) needs the autoencoder as ``codec``: the training set is
    encoded once, and the VAE's weights go into every checkpoint under ``vae.``. A reflow
    trains on ``pairs`` instead of the dataset: (N, 2, ...) stacks of (noise, sample)
    in the model's space (see :mod:`diffkit.methods.reflow`), starting from the EMA
    weights of the run or checkpoint ``init_from`` (e.g. the flow that made the pairs)
    unless it resumes. A fine-tuned run (``cfg.init_from``, ``--init-from``) starts from
    ``init_from``'s weights likewise, with a new optimizer and LR schedule.

    With ``cfg.train.eval_every`` the EMA model is scored every N epochs with the feature
    classifier (``classifier``, else the most accurate qualified one for the dataset under
    ``settings.runs_dir``; see :func:`diffkit.eval.classifiers.choose_classifier`).

    A labelled folder's class names are recorded in the run's config (``data.class_names``:
    config.json and every checkpoint), so the run keeps them if the folder moves; a folder
    whose classes differ from recorded ones is a DataError (:func:`load_dataset`).

    Every input is checked before the run folder is written: a model too large for memory
    (ResourceError), a resume checkpoint that does not fit the model (CheckpointError). Rank
    0 holds the run's :class:`RunLock` from before reading a resumed run until training ends.
    """
    on_event = _progress_bar(dist) if on_event is None else on_event
    device = resolve_device(settings.device, dist.local_rank)
    autocast_dtype = resolve_precision(cfg.train.precision, device)
    if (cfg.latent is None) != (codec is None):
        raise ValueError("a latent model needs its codec, a pixel model none")
    check_trainable(cfg.model, device)
    with ExitStack() as held:
        if resume is not None and dist.is_main:
            lock_for_resume(held, resume)
        data = _training_data(cfg, settings, dist, codec, pairs, on_event)
        # a labelled folder's classes go into config.json and every checkpoint's config
        cfg = cfg.model_copy(update={"data": with_class_names(cfg.data, data)})
        batches = make_batches(
            data, cfg.train.batch_size, seed=cfg.train.seed, device=device,
            rank=dist.rank, world=dist.world,
        )  # fmt: skip
        ckpt, state = None, None
        if resume is not None:
            ckpt, state = load_resume(resume.last_checkpoint, cfg.model, cfg.train,
                                      world=dist.world, batches=len(batches))  # fmt: skip
        model, cfg = _initial_model(cfg, init_from if resume is None else None)
        evaluate = None
        if dist.is_main:
            evaluate = _evaluation(cfg, settings, device, classifier, codec, on_event)
        objective = objective_for(cfg, pairs is not None, device)  # a student loads its teacher
        # everything above validated the inputs; only now touch the disk
        run = _run_folder(cfg, settings, dist, held, resume, state, len(batches), on_run_dir)
        t0 = time.time()
        result = train(
            model, objective, batches, cfg.train,
            device=device, autocast_dtype=autocast_dtype, run=run if dist.is_main else None,
            run_config=cfg.model_dump(mode="json"), dist=dist, resume=ckpt,
            preview=_preview(cfg, device, codec, run), evaluate=evaluate, on_event=on_event,
            extra_tensors=codec_tensors(codec), compile_backend=settings.compile_with,
            estimate=_estimate_note(cfg),
        )  # fmt: skip
        if dist.is_main and run is not None:
            finish_run(
                run, result, device=device, autocast_dtype=autocast_dtype, model=model,
                wall_seconds_this_session=time.time() - t0, world_size=dist.world,
                train_images=len(data),
            )  # fmt: skip
    return run, result


def _progress_bar(dist: DistInfo) -> Callable[[TrainEvent], None]:
    """The default listener: a progress bar on stderr when it is a terminal, on rank 0."""
    from diffkit.progress import TrainBar, wanted

    return TrainBar() if wanted(None) and dist.is_main else (lambda e: None)


def _estimate_note(cfg: GenerativeRunConfig) -> bool | str:
    """The loop's ``estimate``: off for the tiny preset (always short), else on, naming
    the small preset in the warning unless the run already uses it."""
    preset = getattr(cfg, "preset", None)
    if preset == "tiny":
        return False
    note = None if preset in ("small", "small-v1") else small_preset_note(cfg.method)
    return note or True


def _run_folder(cfg: GenerativeRunConfig, settings: Settings, dist: DistInfo, held: ExitStack,
                resume: RunDir | None, state, batches: int,
                on_run_dir: Callable[[RunDir], None]) -> RunDir | None:  # fmt: skip
    """The run folder, made (or reopened for ``resume``) on rank 0 and shared with every
    rank; ``state`` is the resume checkpoint's, whose step the reopened run is at."""
    run: RunDir | None = None
    if dist.is_main:
        step = state.position.step if state is not None else None
        folder = METHODS[cfg.method].runs_folder(cfg)
        run = open_run(settings.runs_dir, folder, cfg, held, resume, step, batches)
        on_run_dir(run)
    return broadcast_object(run, dist)  # type: ignore[return-value]


def _preview(
    cfg: GenerativeRunConfig, device: torch.device, codec: Codec | None, run: RunDir | None
) -> Callable[[nn.Module, int], Path]:
    """The preview callback: a grid of samples; for a class-conditional model one column
    per class, its name above it."""
    k = cfg.num_classes
    names = class_names_of(cfg.data)

    def preview(ema_net: nn.Module, tag: str) -> Path:
        assert run is not None  # previews run on rank 0 only, which has the folder
        n = cfg.train.preview_n
        pipe = pipeline_for(cfg, ema_net, device, codec)
        labels = cycle_labels(k, n)
        images = pipe.sample(
            n, sampler=cfg.train.preview_sampler, steps=cfg.train.preview_steps,
            seed=cfg.train.seed, labels=labels,
        ).images  # fmt: skip
        path = run.samples / f"{tag}.png"
        if labels is None:
            save_grid(images, path)
        else:
            save_class_grid(images, labels, path, names)
        return path

    return preview
