"""Single-step denoisers: training (:func:`train_denoiser`) and every model as one.

A :class:`Denoiser` maps a noisy image ``y = x + sigma eps`` (diffkit's [-1, 1] images,
sigma in the seeds' [0, 1] units, so the noise has std ``2 sigma`` here) to an estimate of
x. Besides the networks ``diffkit train denoiser`` trains, every pixel DDPM and rectified
flow is one without training, through Tweedie's formula: its x0 estimate at the matching
noise level (:func:`tweedie_ddpm`, :func:`tweedie_flow`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from diffkit.config.resolve import validate
from diffkit.config.run import DenoiserRunConfig
from diffkit.config.settings import Settings
from diffkit.data.batching import make_batches
from diffkit.methods.common import finish_run, load_splits, lock_for_resume, open_run
from diffkit.methods.pipeline import Pipeline, check_weights, load_weights
from diffkit.methods.registry import method_objective
from diffkit.methods.restore import load_run_pipeline
from diffkit.models.conditioning import Cond
from diffkit.models.contract import DDPMModel
from diffkit.nn.build import build_model, check_trainable
from diffkit.objectives.denoise import image_sigma, sigma_to_net_time
from diffkit.runs.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_header,
    resolve_checkpoint,
)
from diffkit.runs.layout import RunDir
from diffkit.runs.plots import save_grid
from diffkit.schedules import DDPMSchedule
from diffkit.training import TrainEvent, TrainResult, train
from diffkit.training.hardware import resolve_device, resolve_precision
from diffkit.training.resume import load_resume

DenoiseFn = Callable[[Tensor, float], Tensor]


@dataclass(frozen=True)
class Denoiser:
    """``fn(y, sigma) -> x_hat``: y (B, C, H, W) in diffkit's units, sigma the seeds'."""

    name: str
    fn: DenoiseFn
    kind: str  # "trained", "tweedie-ddpm", "tweedie-flow", "blur", "oracle"
    dataset: str | None = None  # what a run was trained on (None: a baseline)

    def __call__(self, y: Tensor, sigma: float) -> Tensor:
        return self.fn(y, sigma)


def trained(net: torch.nn.Module, sigma_input: bool, name: str = "denoiser") -> Denoiser:
    """A network of ``diffkit train denoiser`` (its time input 0, or sigma's embedding)."""

    @torch.no_grad()
    def fn(y: Tensor, sigma: float) -> Tensor:
        s = torch.full((y.shape[0],), float(sigma), device=y.device)
        t = sigma_to_net_time(s) if sigma_input else torch.zeros_like(s)
        return net(y, t.to(y.dtype), None)

    return Denoiser(name, fn, "trained")


# Tweedie: a diffusion model's x0 estimate is E[x | y], the MMSE denoiser at its noise level.


def ddpm_timestep(schedule: DDPMSchedule, sigma: float) -> int:
    """The timestep whose noise level is nearest ``image_sigma(sigma)`` in log space:
    x_t / sqrt(abar_t) = x0 + sigma_t eps with sigma_t = sqrt((1 - abar_t) / abar_t)."""
    ab = schedule.alphas_cumprod.double()
    levels = ((1 - ab) / ab).sqrt().log()  # (T,) increasing
    return int((levels - math.log(image_sigma(sigma))).abs().argmin())


def _unconditional(pipe: Pipeline, b: int):
    """The model's network for a batch of ``b``: a class-conditional one on its null class
    (a denoiser knows no class)."""
    if pipe.num_classes is None:
        return pipe.network()
    labels = torch.full((b,), pipe.num_classes, dtype=torch.long)
    return pipe.network(Cond(labels=labels))


def tweedie_ddpm(pipe: Pipeline, name: str = "ddpm") -> Denoiser:
    """A DDPM as a denoiser at any sigma: scale y to x_t at the nearest timestep (exact on
    the grid's noise levels, within half a grid step in log sigma between them), read its
    x0 (clamped as the model samples); sigma 0 returns y."""
    model = pipe.model
    assert isinstance(model, DDPMModel)
    sched = model.schedule

    @torch.no_grad()
    def fn(y: Tensor, sigma: float) -> Tensor:
        if sigma == 0:
            return y
        denoise = pipe.denoiser(_unconditional(pipe, y.shape[0]))
        t = ddpm_timestep(sched, sigma)
        ab = float(sched.alphas_cumprod[t])
        ts = torch.full((y.shape[0],), t, device=y.device, dtype=torch.long)
        return denoise(math.sqrt(ab) * y.to(pipe.device), ts)[1]

    return Denoiser(name, fn, "tweedie-ddpm")


def tweedie_flow(pipe: Pipeline, name: str = "flow") -> Denoiser:
    """A rectified flow as a denoiser: x_t = t x1 + (1 - t) eps, so x_t / t = x1 + s eps with
    s = (1 - t) / t, i.e. t = 1 / (1 + s) exactly; x1 = x_t + (1 - t) v(x_t, t)."""
    scale = pipe.model.time_scale  # type: ignore[attr-defined]

    @torch.no_grad()
    def fn(y: Tensor, sigma: float) -> Tensor:
        if sigma == 0:
            return y
        net = _unconditional(pipe, y.shape[0])
        t = 1 / (1 + image_sigma(sigma))
        xt = t * y.to(pipe.device)
        ts = torch.full((y.shape[0],), t * scale, device=y.device)
        return xt + (1 - t) * net(xt, ts, None)

    return Denoiser(name, fn, "tweedie-flow")


def load_denoiser(path: Path, device: torch.device, use_ema: bool = True) -> Denoiser:
    """A run as a denoiser: a trained denoiser, or a pixel DDPM / flow through Tweedie."""
    file = resolve_checkpoint(path)
    header = read_checkpoint_header(file)
    method = header.config.get("method")
    folder = Path(path).name
    if method == "denoiser":
        cfg = validate(DenoiserRunConfig, header.config)
        n = cfg.noise
        name = f"denoiser σ={n.sigma_min:g}" if n.sigma_min == n.sigma_max else (
            f"denoiser σ∈[{n.sigma_min:g},{n.sigma_max:g}]")  # fmt: skip
        name += (" +σ input" if n.sigma_input else "") + (" N2N" if n.target == "noisy" else "")
        name = "denoiser of pure noise" if n.pure_noise else name
        name += f" [{folder}]"
        section = "ema" if use_ema else "model"  # with ema_decay 0 the EMA is the model
        net = build_model(cfg.model)
        check_weights(net, header.section(section), path, f"{section}.")
        load_weights(net, load_checkpoint(file, prefixes=(section,)).section(section), path)
        return replace(trained(net.to(device).eval(), cfg.noise.sigma_input, name),
                       dataset=cfg.data.dataset)  # fmt: skip
    if method in ("ddpm", "rf"):
        pipe = load_run_pipeline(path, file, header, device, use_ema)
        if pipe.model.codec is not None:
            raise CheckpointError(f"{path} is a latent model; denoising is in pixels")
        tweedie = tweedie_ddpm if method == "ddpm" else tweedie_flow
        d = tweedie(pipe, f"{'DDPM' if method == 'ddpm' else 'flow'} via Tweedie [{folder}]")
        return replace(d, dataset=pipe.config.data.dataset if pipe.config else None)
    raise CheckpointError(f"{path} is a {method} run; a denoiser is a denoiser, ddpm or rf run "
                          "(pixel space)")  # fmt: skip


# Training


def train_denoiser(
    cfg: DenoiserRunConfig,
    settings: Settings,
    *,
    resume: RunDir | None = None,
    on_event: Callable[[TrainEvent], None] = lambda e: None,
    on_run_dir: Callable[[RunDir], None] = lambda r: None,
) -> tuple[RunDir, TrainResult]:
    """Train (or resume) a single-step denoiser; inputs are checked before the run folder
    is written."""
    device = resolve_device(settings.device)
    autocast_dtype = resolve_precision(cfg.train.precision, device)
    check_trainable(cfg.model, device)
    with ExitStack() as held:
        if resume is not None:
            lock_for_resume(held, resume)
        data, test = load_splits(cfg.data, settings, on_event)
        batches = make_batches(data, cfg.train.batch_size, seed=cfg.train.seed, device=device)
        ckpt = None
        if resume is not None:
            ckpt, _ = load_resume(resume.last_checkpoint, cfg.model, cfg.train, world=1,
                                  batches=len(batches))  # fmt: skip
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model)
        step = int(ckpt.train_state["position"]["step"]) if ckpt is not None else None
        run = open_run(settings.runs_dir, "denoiser", cfg, held, resume, step, len(batches))
        on_run_dir(run)
        t0 = time.time()
        result = train(
            model, method_objective(cfg), batches, cfg.train, device=device,
            autocast_dtype=autocast_dtype, run=run, run_config=cfg.model_dump(mode="json"),
            resume=ckpt, preview=_preview(cfg, test.images[:8], run, device),
            on_event=on_event, compile_backend=settings.compile_with,
        )  # fmt: skip
        finish_run(run, result, device=device, autocast_dtype=autocast_dtype, model=model,
                   wall_seconds_this_session=time.time() - t0,
                   train_images=len(data))  # fmt: skip
    return run, result


def _preview(cfg: DenoiserRunConfig, images: Tensor, run: RunDir, device: torch.device):
    """Rows: clean test digits, then noisy and denoised at the lowest, middle and highest
    training sigma (seed 0)."""
    from diffkit.data.loader import to_unit_range

    x = to_unit_range(images).to(device)  # (8, C, H, W)
    n = cfg.noise
    sigmas = sorted({n.sigma_min, (n.sigma_min + n.sigma_max) / 2, n.sigma_max})
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(device)

    @torch.no_grad()
    def preview(ema_net, tag: str) -> Path:
        d = trained(ema_net, n.sigma_input)
        rows = [x]
        for sigma in sigmas:
            y = x + image_sigma(sigma) * eps
            rows += [y.clamp(-1, 1), d(y, sigma).clamp(-1, 1)]
        path = run.samples / f"{tag}.png"
        save_grid(torch.cat(rows).cpu(), path, nrow=8)
        return path

    return preview
