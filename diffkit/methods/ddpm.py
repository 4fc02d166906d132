"""Pixel-space DDPM: train from a config, sample from a checkpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from diffkit.config.resolve import validate
from diffkit.config.run import DDPMRunConfig
from diffkit.config.settings import Settings
from diffkit.data.loader import TensorBatches
from diffkit.data.registry import DataError, ImageData, load_dataset
from diffkit.methods.common import finish_run
from diffkit.methods.latent import codec_from_checkpoint, codec_tensors, encode_dataset
from diffkit.nn.build import build_model
from diffkit.objectives.ddpm import DDPMObjective
from diffkit.runs.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint,
)
from diffkit.runs.layout import RunDir, write_json
from diffkit.runs.metrics import truncate_after
from diffkit.runs.plots import save_grid
from diffkit.samplers import ddim_sample, ddpm_sample, make_denoiser
from diffkit.samplers.ddpm import Variance
from diffkit.samplers.guidance import guided
from diffkit.schedules import DDPMSchedule, Spacing, make_schedule, spaced_timesteps
from diffkit.training import TrainEvent, TrainResult, train
from diffkit.training.distributed import DistInfo, broadcast_object
from diffkit.training.hardware import resolve_device, resolve_precision

if TYPE_CHECKING:
    from diffkit.methods.vae import LatentCodec

SamplerName = Literal["ddpm", "ddim"]


def schedule_of(cfg: DDPMRunConfig) -> DDPMSchedule:
    d = cfg.diffusion
    return make_schedule(d.schedule, d.num_steps, d.beta_start, d.beta_end)


@dataclass
class DDPMPipeline:
    """A trained DDPM ready to sample: network (EMA weights by default) + schedule, and for
    a latent model the autoencoder that decodes its samples."""

    config: DDPMRunConfig
    net: nn.Module
    device: torch.device
    codec: LatentCodec | None = None

    @property
    def schedule(self) -> DDPMSchedule:
        return schedule_of(self.config)

    @property
    def num_classes(self) -> int | None:
        return self.config.num_classes

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        sampler: SamplerName = "ddim",
        steps: int | None = None,
        eta: float = 0.0,
        spacing: Spacing = "trailing",
        variance: Variance = "fixed_small",
        seed: int = 0,
        batch_size: int = 256,
        clip: bool | None = None,
        labels: Tensor | None = None,
        guidance: float = 1.0,
        on_batch: Callable[[int, int], None] | None = None,
        on_step: Callable[[], None] | None = None,
    ) -> Tensor:
        """Draw ``n`` images, float32 (n, C, H, W) in [-1, 1] on the CPU.

        ``steps`` defaults to T for DDPM and 50 for DDIM. The initial noise comes from a CPU
        generator seeded with ``seed``, so the same seed gives the same images on any device.
        ``labels`` (n,) picks the classes of a class-conditional model (None: unconditional,
        the null class) and ``guidance`` is the classifier-free guidance scale w (1 = plain
        conditional). ``clip`` (x0 clamped to [-1, 1]) defaults to on for pixels, off for
        latents. ``on_step()`` is called after every denoising step of every batch.
        """
        labels = self._check_labels(labels, n)
        sched = self.schedule
        steps = steps or (sched.num_steps if sampler == "ddpm" else 50)
        ts = spaced_timesteps(sched.num_steps, steps, spacing)
        clip = self.codec is None if clip is None else clip
        gen_cpu = torch.Generator().manual_seed(seed)
        noise = torch.randn(n, *self.config.sample_shape, generator=gen_cpu)
        gen = torch.Generator(self.device).manual_seed(seed + 1)
        callback = (lambda i, x, x0: on_step()) if on_step else None
        out = []
        for start in range(0, n, batch_size):
            x = noise[start : start + batch_size].to(self.device)
            net = self.net
            if labels is not None:
                y = labels[start : start + batch_size]
                net = guided(self.net, y, self.num_classes, guidance)  # type: ignore[arg-type]
            denoiser = make_denoiser(net, sched, self.config.diffusion.prediction, clip=clip)
            if sampler == "ddpm":
                x = ddpm_sample(
                    denoiser, x, ts, sched, variance=variance, generator=gen, callback=callback
                )
            else:
                x = ddim_sample(denoiser, x, ts, sched, eta=eta, generator=gen, callback=callback)
            if self.codec is not None:
                x = self.codec.decode(x)
            out.append(x.float().cpu())
            if on_batch:
                on_batch(min(start + batch_size, n), n)
        return torch.cat(out)

    def _check_labels(self, labels: Tensor | None, n: int) -> Tensor | None:
        if labels is None:
            return None
        k = self.num_classes
        if k is None:
            raise ValueError("this model is unconditional; it takes no class labels")
        labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        if labels.shape != (n,):
            raise ValueError(f"need {n} labels, got {labels.shape[0]}")
        if labels.min() < 0 or labels.max() >= k:
            raise ValueError(f"class labels must lie in 0..{k - 1}")
        return labels


def cycle_labels(num_classes: int | None, n: int) -> Tensor | None:
    """0, 1, ..., K-1, 0, 1, ... (n,): every class equally often (up to one); None for an
    unconditional model (``num_classes`` None)."""
    return torch.arange(n) % num_classes if num_classes else None


def load_pipeline(
    path: Path, device: torch.device | str = "cpu", use_ema: bool = True
) -> DDPMPipeline:
    """Rebuild a model from a checkpoint or run folder: the file alone is enough (a latent
    model carries its autoencoder)."""
    device = torch.device(device)
    section = "ema" if use_ema else "model"
    ckpt = load_checkpoint(resolve_checkpoint(path), prefixes=(section, "vae"))
    method = ckpt.config.get("method") if isinstance(ckpt.config, dict) else None
    if method not in ("ddpm", "ldm"):
        raise CheckpointError(f"{path} is a {method} run, not a diffusion model (ddpm or ldm)")
    try:
        cfg = validate(DDPMRunConfig, ckpt.config)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint config: {exc}") from None
    net = build_model(cfg.model)
    load_weights(net, ckpt.section(section), path)
    codec = None
    if cfg.latent is not None:
        codec = codec_from_checkpoint(cfg.latent, ckpt.section("vae"), device)
    return DDPMPipeline(cfg, net.to(device).eval(), device, codec)


# diffkit 0.1.0 named the UNet's middle blocks mid1 / mid_attn / mid2.
_LEGACY_KEYS = (("mid1.", "mid.res1."), ("mid_attn.", "mid.attn."), ("mid2.", "mid.res2."))


def load_weights(net: nn.Module, weights: dict[str, Tensor], source: Path) -> None:
    """Strict ``load_state_dict``; missing, extra or mis-shaped tensors -> CheckpointError."""
    renamed = {}
    for key, value in weights.items():
        for old, new in _LEGACY_KEYS:
            if key.startswith(old):
                key = new + key[len(old) :]
        renamed[key] = value
    try:
        net.load_state_dict(renamed)
    except RuntimeError:
        raise CheckpointError(
            f"{source}: weights do not match the model its config describes"
        ) from None


def _load_once_per_host(cfg: DDPMRunConfig, settings: Settings, dist: DistInfo) -> ImageData:
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
    cfg: DDPMRunConfig,
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
        images = DDPMPipeline(cfg, ema_net, device, codec).sample(
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


def train_ddpm(
    cfg: DDPMRunConfig,
    settings: Settings,
    *,
    resume: RunDir | None = None,
    dist: DistInfo = DistInfo(),
    classifier: Path | None = None,
    codec: LatentCodec | None = None,
    on_event: Callable[[TrainEvent], None] = lambda e: None,
    on_run_dir: Callable[[RunDir], None] = lambda r: None,
) -> tuple[RunDir | None, TrainResult]:
    """Train a DDPM; the run folder is created (or reopened on ``resume``) on rank 0.

    A latent model (``cfg.latent``) needs the autoencoder as ``codec``: the training set is
    encoded once, and the VAE's weights go into every checkpoint under ``vae.``.

    With ``cfg.train.eval_every`` the EMA model is scored every N epochs with the feature
    classifier (``classifier``, else the newest for the dataset under ``settings.runs_dir``).
    """
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device, dist.local_rank)
    autocast_dtype = resolve_precision(cfg.train.precision, device)
    data = _load_once_per_host(cfg, settings, dist)
    if (cfg.latent is None) != (codec is None):
        raise ValueError("a latent model needs its codec, a pixel model none")
    if codec is not None:
        data = encode_dataset(codec, data)
    batches = TensorBatches(
        data, cfg.train.batch_size, seed=cfg.train.seed, device=device,
        rank=dist.rank, world=dist.world,
    )  # fmt: skip
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    model = build_model(cfg.model)
    ckpt = _checked_resume(resume, model, dist) if resume is not None else None
    evaluate = _evaluation(cfg, settings, device, classifier, codec) if dist.is_main else None
    run: RunDir | None = None
    if dist.is_main:  # everything above validated the inputs; only now touch the disk
        run = resume or RunDir.create(settings.runs_dir, cfg.method, cfg.name)
        write_json(run.config, cfg.model_dump(mode="json"))  # on resume: e.g. new epochs
        if ckpt is not None:
            truncate_after(run.metrics, ckpt.train_state["position"]["step"])
            run.summary.unlink(missing_ok=True)  # stale until this session ends
        on_run_dir(run)
    run = broadcast_object(run, dist)  # type: ignore[assignment]
    sched = schedule_of(cfg)
    d = cfg.diffusion
    objective = DDPMObjective(
        sched, d.prediction, d.min_snr_gamma, cfg.num_classes, cfg.train.cond_drop
    )
    k = cfg.num_classes

    def preview(ema_net: nn.Module, epoch: int) -> None:
        """A grid of samples; for a class-conditional model one column per class."""
        n = cfg.train.preview_n
        pipe = DDPMPipeline(cfg, ema_net, device, codec)
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
