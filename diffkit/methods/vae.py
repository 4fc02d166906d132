"""The VAE of latent diffusion: train it, then map images <-> unit-variance latents.

``train_vae`` writes ``vae.safetensors``: the eval-mode weights, the run config, the test
reconstruction error and the latent statistics ``shift`` / ``scale`` with which
``(mu - shift) * scale`` has zero mean and unit variance over the training images (the scale
factor of Rombach et al. 2022, Sec. 4.3, plus a shift). :class:`LatentCodec` applies them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from diffkit.config.resolve import validate
from diffkit.config.run import VAERunConfig
from diffkit.config.settings import Settings
from diffkit.data.batching import make_batches
from diffkit.data.loader import to_unit_range
from diffkit.data.registry import ImageData
from diffkit.eval.features import tensor_digest
from diffkit.methods.common import finish_run, load_splits, lock_for_resume, open_resumable
from diffkit.methods.registry import method_of
from diffkit.models.codec import NetCodec
from diffkit.nn.build import check_trainable, meta_model
from diffkit.nn.vae import VAE, build_vae
from diffkit.objectives.vae import Perceptual, VAEObjective, kl_divergence
from diffkit.runs.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_state,
    load_checkpoint,
    load_state,
    read_checkpoint_header,
    save_checkpoint,
)
from diffkit.runs.layout import RunDir
from diffkit.runs.plots import save_grid
from diffkit.training import TrainEvent, TrainResult, train
from diffkit.training.hardware import resolve_device, resolve_precision

if TYPE_CHECKING:
    from diffkit.eval.lpips import LPIPS

VAE_FILE = "vae.safetensors"
STATS_IMAGES = 10_000  # training images whose posterior means fix shift and scale
BATCH = 1000  # images per forward pass outside training
LPIPS_IMAGES = 1000  # test images of the summary's LPIPS (1.6 s with AlexNet on 2 CPU cores)


@dataclass
class VAEResult:
    run: RunDir
    train: TrainResult
    recon_mse: float | None  # None (like the rest) when training did not finish
    kl: float | None
    shift: float | None
    scale: float | None
    digest: str | None
    lpips: float | None = None  # also None when the loss had no LPIPS term


@dataclass(frozen=True)
class VAEScores:
    """A VAE on a test split: reconstruction MSE per pixel ([-1, 1] units), KL per image
    (nats) and, when an LPIPS network was given, the mean LPIPS of image and
    reconstruction (posterior means decoded) over the first ``LPIPS_IMAGES`` images."""

    recon_mse: float
    kl: float
    lpips: float | None = None


@dataclass
class LatentCodec(NetCodec):
    """A trained VAE (eval mode, on one device) plus its latent statistics.

    ``encode`` returns scaled latents ``(z - shift) * scale``; ``decode`` undoes the scaling
    before decoding. Both batch internally (``BATCH`` images a slice), run under
    ``no_grad`` and return float32 on the device of their input (:class:`NetCodec`).
    """

    BATCH = BATCH
    KIND = "VAE"
    config: VAERunConfig
    net: VAE
    shift: float
    scale: float
    source: str
    digest: str = ""

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent: (D,) flat or (C, H/f, W/f) spatial (f: the downsampling)."""
        return self.config.model.latent_shape

    @property
    def image_shape(self) -> tuple[int, int, int]:
        m = self.config.model
        return (m.in_channels, m.image_size, m.image_size)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.net.encode(x)  # (b, *latent_shape) each
        return mu, torch.exp(0.5 * logvar)

    def decode_slice(self, z: Tensor) -> Tensor:
        return self.net.decode(z).float()

    def to_parts(self) -> tuple[dict[str, Any], dict[str, Tensor], dict[str, Any]]:
        """(run config JSON, weights on the CPU without prefix, ``{"shift", "scale",
        "sha256"}``): what a latent-diffusion checkpoint embeds to rebuild this codec."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        latent = {"shift": self.shift, "scale": self.scale, "sha256": self.digest}
        return self.config.model_dump(mode="json"), tensors, latent

    @classmethod
    def from_parts(
        cls,
        config_json: dict[str, Any],
        tensors: dict[str, Tensor],
        latent: dict[str, Any],
        device: torch.device | str = "cpu",
        *,
        source: str = "embedded VAE",
    ) -> LatentCodec:
        """Rebuild from :meth:`to_parts`; anything inconsistent raises CheckpointError."""
        try:
            cfg = validate(VAERunConfig, config_json)
        except ValueError as exc:
            raise CheckpointError(f"{source}: VAE config: {exc}") from None
        try:
            shift, scale = float(latent["shift"]), float(latent["scale"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{source}: no latent shift/scale recorded") from None
        if not (math.isfinite(shift) and math.isfinite(scale) and scale > 0):
            raise CheckpointError(f"{source}: bad latent statistics shift={shift} scale={scale}")
        digest = tensor_digest(tensors)
        if latent.get("sha256") and latent["sha256"] != digest:
            raise CheckpointError(f"{source}: VAE weights do not match their sha256 (modified?)")
        net = build_vae(cfg.model)
        load_state(net, tensors, source, "weights do not match the VAE config")
        return cls(cfg, net.to(device).eval(), shift, scale, source, digest)


def load_codec(path: Path, device: torch.device | str = "cpu") -> LatentCodec:
    """Load a VAE run folder (its ``vae.safetensors``) or the file itself. The header is
    checked against the VAE its config describes (built on the meta device) before a
    tensor is read, so a config claiming a huge VAE is refused without allocating it."""
    path = Path(path)
    file = path / VAE_FILE if path.is_dir() else path
    if path.is_dir() and not file.is_file():
        raise CheckpointError(
            f"{path} has no {VAE_FILE} (train it with `diffkit train vae`, or it was interrupted)"
        )
    if not file.is_file():
        raise CheckpointError(f"no VAE run or {VAE_FILE} at {path}")
    header = read_checkpoint_header(file)
    latent = header.train_state.get("latent")
    if header.config.get("method") != "vae" or not isinstance(latent, dict):
        raise CheckpointError(f"{file} is not a trained VAE ({VAE_FILE} of `diffkit train vae`)")
    try:
        cfg = validate(VAERunConfig, header.config)
    except ValueError as exc:
        raise CheckpointError(f"{file}: VAE config: {exc}") from None
    check_state(meta_model(cfg.model), header.section("model"), file, "model.",
                "weights do not match the VAE config")  # fmt: skip
    ckpt = load_checkpoint(file, prefixes=("model",))
    return LatentCodec.from_parts(
        ckpt.config, ckpt.section("model"), latent, device, source=str(file)
    )


@torch.no_grad()
def evaluate_vae(
    net: VAE, data: ImageData, device: torch.device, metric: LPIPS | None = None
) -> VAEScores:
    """The scores of ``net`` on ``data`` (see :class:`VAEScores`); reconstructions decode
    the posterior mean. LPIPS is measured on a slice: it costs more than the VAE itself."""
    net.eval()
    sq = kl = perceptual = 0.0
    for start in range(0, len(data), BATCH):
        x = to_unit_range(data.images[start : start + BATCH].to(device))
        mu, logvar = net.encode(x)
        recon = net.decode(mu).float()
        sq += float((recon - x).pow(2).sum())
        kl += float(kl_divergence(mu.float(), logvar.float()).sum())
        if metric is not None and start < LPIPS_IMAGES:
            k = LPIPS_IMAGES - start
            perceptual += float(metric.distance(x[:k], recon[:k]).sum())
    n = len(data)
    lpips = perceptual / min(n, LPIPS_IMAGES) if metric is not None else None
    return VAEScores(sq / data.images[0].numel() / n, kl / n, lpips)


def load_perceptual(cfg: VAERunConfig, settings: Settings, device: torch.device) -> LPIPS | None:
    """The LPIPS network of the loss, or None without an LPIPS term (then the lpips
    package is not imported). A missing package or backbone file raises one line."""
    if cfg.lpips_weight == 0:
        return None
    from diffkit.eval.lpips import load_lpips

    return load_lpips(cfg.lpips_net, settings.lpips_weights, device)


def lpips_loss(metric: LPIPS) -> Perceptual:
    """LPIPS as a loss: ``(x, y)`` (B, C, H, W) in [-1, 1] -> (B,), differentiable in its
    inputs (``LPIPS.distance`` runs without gradients). The images are prepared exactly as
    the metric prepares them (gray repeated to RGB, upsampled below 64 px), so training
    optimises the distance ``diffkit eval --lpips`` reports. The network is frozen: no
    gradient reaches its parameters."""
    return metric  # LPIPS.__call__: (x, y) -> (B,), with gradients


def vae_objective(cfg: VAERunConfig, metric: LPIPS | None) -> VAEObjective:
    """The training loss of ``cfg``; ``metric`` (from :func:`load_perceptual`) when it has
    an LPIPS term."""
    perceptual = lpips_loss(metric) if metric is not None else None
    return VAEObjective(cfg.kl_weight, cfg.recon_loss, cfg.lpips_weight, perceptual)


@torch.no_grad()
def latent_stats(net: VAE, data: ImageData, device: torch.device) -> tuple[float, float]:
    """(shift, scale): mean and 1/std of the posterior means of the first ``STATS_IMAGES``
    images, one scalar each over all latent elements."""
    net.eval()
    images = data.images[:STATS_IMAGES]
    mus = [
        net.encode(to_unit_range(images[s : s + BATCH].to(device)))[0].float().cpu()
        for s in range(0, len(images), BATCH)
    ]
    mu = torch.cat(mus).double()
    return float(mu.mean()), float(1.0 / mu.std().clamp_min(1e-12))


@torch.no_grad()
def save_recon_grid(net: torch.nn.Module, images: Tensor, path: Path) -> None:
    """Grid of uint8 ``images`` (top rows) above their posterior-mean reconstructions."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    x = to_unit_range(images.to(device))
    recon = net.decode(net.encode(x)[0]).float()
    net.train(was_training)
    save_grid(torch.cat([x, recon]).cpu(), path, nrow=min(8, images.shape[0]))


def _write_codec(
    run: RunDir,
    cfg: VAERunConfig,
    train_data: ImageData,
    test_data: ImageData,
    shown: Tensor,
    device: torch.device,
    metric: LPIPS | None = None,
) -> tuple[VAEScores, float, float, str]:
    """Measure the trained EMA weights and write ``vae.safetensors`` and ``recon.png``;
    (test scores, with LPIPS when ``metric`` is given; shift, scale, sha256)."""
    net = build_vae(cfg.model)
    net.load_state_dict(load_checkpoint(run.last_checkpoint, ("ema",)).section("ema"))
    net = net.to(device).eval()
    scores = evaluate_vae(net, test_data, device, metric)
    shift, scale = latent_stats(net, train_data, device)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    digest = tensor_digest(tensors)
    latent = {"shift": shift, "scale": scale, "sha256": digest}
    state: dict[str, Any] = {"latent": latent, "recon_mse": scores.recon_mse, "kl": scores.kl}
    if scores.lpips is not None:
        state["lpips"] = scores.lpips
    model_tensors = {f"model.{k}": v for k, v in tensors.items()}
    config = cfg.model_dump(mode="json")
    save_checkpoint(run.path / VAE_FILE, Checkpoint(config, model_tensors, state))
    save_recon_grid(net, shown, run.path / "recon.png")
    return scores, shift, scale, digest


def train_vae(
    cfg: VAERunConfig,
    settings: Settings,
    *,
    resume: RunDir | None = None,
    on_event: Callable[[TrainEvent], None] = lambda e: None,
    on_run_dir: Callable[[RunDir], None] = lambda r: None,
) -> VAEResult:
    """Train (or ``resume``) with the shared loop, then measure and write ``vae.safetensors``.

    Every ``train.sample_every`` epochs: ``samples/recon-epoch-NNNN.png`` (test images above
    their reconstructions). When training finished (or reached ``max_steps``): test
    reconstruction MSE and KL, the latent shift/scale, ``vae.safetensors`` (the EMA weights,
    equal to the trained ones with the recipe's ``ema_decay`` 0) and ``recon.png``. An
    interrupted or non-finite run writes no ``vae.safetensors``; its checkpoints resume it.
    Always: summary.json, loss.png. A VAE too large for memory, an LPIPS term without the
    lpips package or backbone file, or a resume checkpoint that does not fit the model is
    refused before anything is written; the run folder is locked (:class:`RunLock`) while
    training writes it. With LPIPS, the test LPIPS and the backbone's identity join the
    summary.
    """
    device = resolve_device(settings.device)
    autocast_dtype = resolve_precision(cfg.train.precision, device)
    metric = load_perceptual(cfg, settings, device)
    check_trainable(cfg.model, device)
    with ExitStack() as held:
        if resume is not None:
            lock_for_resume(held, resume)
        train_data, test_data = load_splits(cfg.data, settings, on_event)
        batches = make_batches(train_data, cfg.train.batch_size, seed=cfg.train.seed,
                               device=device)  # fmt: skip
        n_show = min(cfg.train.preview_n, len(test_data))
        shown = test_data.images[: n_show // 8 * 8 or n_show]  # whole rows of 8 if possible
        folder = method_of(cfg.method).runs_folder(cfg)
        run, ckpt = open_resumable(cfg, settings, held, resume, len(batches), folder,
                                   on_run_dir)  # fmt: skip
        torch.manual_seed(cfg.train.seed)
        model = build_vae(cfg.model)

        def preview(ema: torch.nn.Module, tag: str) -> Path:
            path = run.samples / f"recon-{tag}.png"
            save_recon_grid(ema, shown, path)
            return path

        t0 = time.time()
        result = train(
            model, vae_objective(cfg, metric), batches, cfg.train, device=device,
            autocast_dtype=autocast_dtype, run=run, run_config=cfg.model_dump(mode="json"),
            resume=ckpt, preview=preview, on_event=on_event,
            compile_backend=settings.compile_with,
        )  # fmt: skip
        scores, shift, scale, digest = None, None, None, None
        if result.reason in ("finished", "max_steps"):
            scores, shift, scale, digest = _write_codec(
                run, cfg, train_data, test_data, shown, device, metric
            )
        measured = _measured(scores, metric)
        finish_run(
            run, result, device=device, autocast_dtype=autocast_dtype, model=model,
            **measured,
            latent={"shift": shift, "scale": scale, "shape": list(cfg.model.latent_shape)},
            sha256=digest, wall_seconds=time.time() - t0,
            train_images=len(train_data), test_images=len(test_data),
        )  # fmt: skip
        return VAEResult(run, result, measured["recon_mse"], measured["kl"], shift, scale,
                         digest, measured.get("lpips"))  # fmt: skip


def _measured(scores: VAEScores | None, metric: LPIPS | None) -> dict[str, Any]:
    """The summary's test scores (None when training did not finish); with an LPIPS term
    also its test value and the backbone it was computed with (name, file, sha256)."""
    out: dict[str, Any] = {"recon_mse": None, "kl": None}
    if scores is not None:
        out |= {"recon_mse": scores.recon_mse, "kl": scores.kl}
    if metric is not None:
        out |= {"lpips": None if scores is None else scores.lpips, "lpips_backbone": metric.about()}
    return out
