"""Single-step denoisers: training (:func:`train_denoiser`) and every model as one.

A :class:`Denoiser` maps a noisy image ``y = x + sigma eps`` (diffkit's [-1, 1] images,
sigma in [0, 1] image units, so the noise has std ``2 sigma`` here) to an estimate of
x. Besides the networks ``diffkit train denoiser`` trains, every pixel DDPM and rectified
flow is one without training, through Tweedie's formula: its x0 estimate at the matching
noise level (:func:`tweedie`).
"""

from __future__ import annotations

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
from diffkit.methods.common import finish_run, load_splits, lock_for_resume, open_resumable
from diffkit.methods.pipeline import Pipeline, check_weights, load_weights
from diffkit.methods.registry import METHODS, method_objective
from diffkit.methods.restore import load_run_pipeline
from diffkit.models.conditioning import Cond
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
from diffkit.training import TrainEvent, TrainResult, train
from diffkit.training.hardware import resolve_device, resolve_precision

DenoiseFn = Callable[[Tensor, float], Tensor]


@dataclass(frozen=True)
class Denoiser:
    """``fn(y, sigma) -> x_hat``: y (B, C, H, W) in diffkit's units, sigma in [0, 1] image units."""

    name: str
    fn: DenoiseFn
    kind: str  # "trained", "tweedie-ddpm", "tweedie-flow" (tweedie-FAMILY), "blur", "oracle"
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


def _unconditional(pipe: Pipeline, b: int):
    """The model's network for a batch of ``b``: a class-conditional one on its null class
    (a denoiser knows no class)."""
    if pipe.num_classes is None:
        return pipe.network()
    labels = torch.full((b,), pipe.num_classes, dtype=torch.long)
    return pipe.network(Cond(labels=labels))


def tweedie(pipe: Pipeline, name: str | None = None) -> Denoiser:
    """A DDPM or a flow as a denoiser at any sigma: its family's x0 estimate at the noise
    level of sigma (:meth:`~diffkit.methods.pipeline.Pipeline.posterior_mean`); sigma 0
    returns y. ``name`` defaults to the family's."""

    @torch.no_grad()
    def fn(y: Tensor, sigma: float) -> Tensor:
        if sigma == 0:
            return y
        return pipe.posterior_mean(_unconditional(pipe, y.shape[0]), y, sigma)

    return Denoiser(name or pipe.FAMILY, fn, f"tweedie-{pipe.FAMILY}")


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
    spec = METHODS.get(method) if isinstance(method, str) else None
    if spec is not None and spec.generative and spec.space != "latent":  # a pixel DDPM or flow
        pipe = load_run_pipeline(path, file, header, device, use_ema)
        if pipe.model.codec is not None:
            raise CheckpointError(f"{path} is a latent model; denoising is in pixels")
        d = tweedie(pipe, f"{pipe.TITLE} via Tweedie [{folder}]")
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
        run, ckpt = open_resumable(cfg, settings, held, resume, len(batches), "denoiser",
                                   on_run_dir)  # fmt: skip
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model)
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
