"""Training of generative denoisers: DDPMs and rectified flows, on pixels or latents.

One function, :func:`train_generative`, for every such method: the config's type picks the
objective (:class:`DDPMObjective` or :class:`FlowObjective`) and the pipeline that draws
previews and evaluation samples; data loading, resume, latents and the loop are shared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from diffkit.config.run import DDPMRunConfig, FlowRunConfig, GenerativeRunConfig
from diffkit.config.settings import Settings
from diffkit.data.loader import TensorBatches
from diffkit.data.registry import DataError, ImageData, load_dataset
from diffkit.methods.common import finish_run
from diffkit.methods.ddpm import schedule_of
from diffkit.methods.latent import codec_tensors, encode_dataset
from diffkit.methods.pipeline import cycle_labels, load_weights, pipeline_for
from diffkit.nn.build import build_model
from diffkit.objectives.ddpm import DDPMObjective
from diffkit.objectives.flow import FlowObjective
from diffkit.runs.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint,
)
from diffkit.runs.layout import RunDir, write_json
from diffkit.runs.metrics import truncate_after
from diffkit.runs.plots import save_grid
from diffkit.training import TrainEvent, TrainResult, train
from diffkit.training.distributed import DistInfo, broadcast_object
from diffkit.training.hardware import resolve_device, resolve_precision

if TYPE_CHECKING:
    from diffkit.methods.vae import LatentCodec


def objective_for(cfg: GenerativeRunConfig, paired: bool = False):
    """The training loss of a config's method."""
    k, drop = cfg.num_classes, cfg.train.cond_drop
    if isinstance(cfg, FlowRunConfig):
        f = cfg.flow
        distill = cfg.reflow.distill_steps if cfg.reflow is not None else None
        return FlowObjective(f.time_sampling, f.logit_mean, f.logit_std, k, drop,
                             paired=paired, distill_steps=distill)  # fmt: skip
    assert isinstance(cfg, DDPMRunConfig)
    d = cfg.diffusion
    return DDPMObjective(schedule_of(cfg), d.prediction, d.min_snr_gamma, k, drop)


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


def _checked_resume(resume: RunDir, model: nn.Module, dist: DistInfo) -> Checkpoint:
    """The run's last checkpoint, verified to fit this model and process count."""
    ckpt = load_checkpoint(resume.last_checkpoint)
    if "position" not in ckpt.train_state:
        raise CheckpointError(f"{resume.last_checkpoint} holds no training state to resume")
    world = ckpt.train_state.get("world_size", 1)
    if world != dist.world:
        raise CheckpointError(
            f"{resume.path} was trained with {world} process(es); resume it with the same "
            f"number (got {dist.world})"
        )
    load_weights(model, ckpt.section("model"), resume.last_checkpoint)
    return ckpt


def _evaluation(
    cfg: GenerativeRunConfig,
    settings: Settings,
    device: torch.device,
    classifier: Path | None,
    codec: LatentCodec | None,
) -> Callable[[nn.Module, int], dict] | None:
    """The in-training evaluation callback, or None when ``train.eval_every`` is 0. Loads the
    classifier and the reference features now, so a missing one fails before training.
    A class-conditional model draws every class equally often (guidance 1) and is also
    scored on the classifier's accuracy for the requested classes."""
    if not cfg.train.eval_every:
        return None
    from diffkit.eval.evaluate import Evaluator
    from diffkit.eval.features import load_extractor

    extractor = load_extractor(
        "classifier", cfg.data.dataset, settings.runs_dir, device, classifier=classifier
    )
    evaluator = Evaluator(cfg.data.dataset, extractor, settings, data=cfg.data, kid_subsets=20)
    t = cfg.train

    def evaluate(ema_net: nn.Module, epoch: int) -> dict:
        start = time.perf_counter()
        labels = cycle_labels(cfg.num_classes, t.eval_n)
        images = pipeline_for(cfg, ema_net, device, codec).sample(
            t.eval_n, sampler=t.eval_sampler, steps=t.eval_steps, seed=t.seed, labels=labels
        )
        scores = evaluator.score_images(images, labels)
        keep = ("fid", "kid", "kid_std", "is", "precision", "recall")
        extra = {"class_accuracy": scores["class_accuracy"]["all"]} if labels is not None else {}
        return (
            {k: scores[k] for k in keep}
            | extra
            | {
                "eval_n": t.eval_n,
                "eval_seconds": time.perf_counter() - start,
                "feature_sha256": extractor.digest[:16],
            }
        )

    return evaluate


def train_generative(
    cfg: GenerativeRunConfig,
    settings: Settings,
    *,
    resume: RunDir | None = None,
    dist: DistInfo = DistInfo(),
    classifier: Path | None = None,
    codec: LatentCodec | None = None,
    pairs: ImageData | None = None,
    init_from: Path | None = None,
    on_event: Callable[[TrainEvent], None] = lambda e: None,
    on_run_dir: Callable[[RunDir], None] = lambda r: None,
) -> tuple[RunDir | None, TrainResult]:
    """Train a DDPM or a rectified flow; the run folder is created (or reopened on
    ``resume``) on rank 0.

    A latent model (``cfg.latent``) needs the autoencoder as ``codec``: the training set is
    encoded once, and the VAE's weights go into every checkpoint under ``vae.``. A reflow
    trains on ``pairs`` instead of the dataset: (N, 2, ...) stacks of (noise, sample)
    in the model's space (see :mod:`diffkit.methods.reflow`), starting from the EMA
    weights of the run or checkpoint ``init_from`` (e.g. the flow that made the pairs)
    unless it resumes.

    With ``cfg.train.eval_every`` the EMA model is scored every N epochs with the feature
    classifier (``classifier``, else the newest for the dataset under ``settings.runs_dir``).
    """
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device, dist.local_rank)
    autocast_dtype = resolve_precision(cfg.train.precision, device)
    if (cfg.latent is None) != (codec is None):
        raise ValueError("a latent model needs its codec, a pixel model none")
    if pairs is not None:
        data = pairs
    else:
        data = _load_once_per_host(cfg, settings, dist)
        if codec is not None:
            data = encode_dataset(codec, data)
    batches = TensorBatches(
        data, cfg.train.batch_size, seed=cfg.train.seed, device=device,
        rank=dist.rank, world=dist.world,
    )  # fmt: skip
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    model = build_model(cfg.model)
    ckpt = _checked_resume(resume, model, dist) if resume is not None else None
    if ckpt is None and init_from is not None:
        init = load_checkpoint(resolve_checkpoint(init_from), prefixes=("ema",))
        load_weights(model, init.section("ema"), init_from)
    evaluate = _evaluation(cfg, settings, device, classifier, codec) if dist.is_main else None
    run: RunDir | None = None
    if dist.is_main:  # everything above validated the inputs; only now touch the disk
        run = resume or RunDir.create(settings.runs_dir, cfg.run_kind, cfg.name)
        write_json(run.config, cfg.model_dump(mode="json"))  # on resume: e.g. new epochs
        if ckpt is not None:
            truncate_after(run.metrics, ckpt.train_state["position"]["step"])
            run.summary.unlink(missing_ok=True)  # stale until this session ends
        on_run_dir(run)
    run = broadcast_object(run, dist)  # type: ignore[assignment]
    objective = objective_for(cfg, paired=pairs is not None)
    k = cfg.num_classes

    def preview(ema_net: nn.Module, epoch: int) -> None:
        """A grid of samples; for a class-conditional model one column per class."""
        n = cfg.train.preview_n
        pipe = pipeline_for(cfg, ema_net, device, codec)
        images = pipe.sample(
            n, sampler=cfg.train.preview_sampler, steps=cfg.train.preview_steps,
            seed=cfg.train.seed, labels=cycle_labels(k, n),
        )  # fmt: skip
        save_grid(images, run.samples / f"epoch-{epoch:04d}.png", nrow=k)

    t0 = time.time()
    result = train(
        model,
        objective,
        batches,
        cfg.train,
        device=device,
        autocast_dtype=autocast_dtype,
        run=run if dist.is_main else None,
        run_config=cfg.model_dump(mode="json"),
        dist=dist,
        resume=ckpt,
        preview=preview,
        evaluate=evaluate,
        on_event=on_event,
        extra_tensors=codec_tensors(codec),
    )
    if dist.is_main and run is not None:
        finish_run(
            run, result, device=device, autocast_dtype=autocast_dtype, model=model,
            wall_seconds_this_session=time.time() - t0, world_size=dist.world,
            train_images=len(data),
        )  # fmt: skip
    return run, result
