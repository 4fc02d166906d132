"""diffusers pipelines as diffkit models: a ``save_pretrained`` folder or ``hf:ORG/NAME``.

A saved ``DDPMPipeline`` or ``DDIMPipeline`` is a ``UNet2DModel`` and a scheduler config.
The config's betas and prediction type define the model; its step rule is replaced by
diffkit's samplers, so every sampler of the DDPM family (ddpm, ddim, dpm++2m, the
probability-flow ODE solvers) runs on it. The adapter follows k-diffusion's
``external.py``: :class:`DiffusersUNet` is a :class:`~diffkit.models.contract.DDPMModel`
that overrides only :meth:`~DiffusersUNet.raw`, calling the UNet and splitting off a
learned variance. The scheduler's sampling conventions (timestep spacing, steps offset,
x0 clipping, reverse variance) become the model's defaults, so ``diffkit sample DIR
--sampler ddim`` takes the steps diffusers' own pipeline would. diffusers' step quirks are
not copied (see docs/foreign-models.md): its DDPM scheduler adds noise on the last step of
a trailing grid, and its DDIM keeps the unclipped eps next to a clipped x0 unless asked.

Everything is checked before a weight is read: a config field diffkit cannot honour is a
:class:`ForeignModelError` naming it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffkit.external import HF_PREFIX, MODEL_INDEX
from diffkit.external.text import PromptEncoder, weights_variant
from diffkit.methods.ddpm import DDPMPipeline
from diffkit.models.conditioning import Cond
from diffkit.models.contract import DDPMModel
from diffkit.runs.checkpoint import CheckpointError
from diffkit.samplers.common import DynamicThreshold
from diffkit.schedules import DDPMSchedule, cosine_betas

INSTALL = 'pip install -e ".[diffusers]"'

DISCRETE_VP_SCHEDULERS = frozenset({
    "DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler", "LMSDiscreteScheduler", "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
})  # fmt: skip
"""Schedulers of a discrete-time variance-preserving diffusion: their betas and prediction
type describe the model and nothing else does, so diffkit's samplers replace their steps."""

PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}
VARIANCES = {"fixed_small": "fixed_small", "fixed_small_log": "fixed_small",
             "fixed_large": "fixed_large", "fixed_large_log": "fixed_large",
             "learned": None, "learned_range": "learned_range"}  # fmt: skip
"""diffusers' variance types -> diffkit's (the _log forms are the same variance computed in
log space; ``learned_range``: the network's interpolation between the two, which diffkit's
ancestral sampler reads; None: a learned log variance, which it does not)."""

SKIPPED_FILES = ["safety_checker/*", "watermarker/*", "feature_extractor/*", "*.bin",
                 "*.msgpack", "*.onnx*", "*.ckpt"]  # fmt: skip

TEXT_PIPELINES = {"IFPipeline": "stage I", "IFSuperResolutionPipeline": "stage II"}
"""Text-to-image pipelines diffkit samples: DeepFloyd IF's pixel-space cascade."""

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class ForeignModelError(CheckpointError):
    """A foreign model that cannot be found, read or honoured (one line, exit 2)."""


@dataclass(eq=False, kw_only=True)
class DiffusersUNet(DDPMModel):
    """A diffusers ``UNet2DModel`` under the model contract."""

    learned_variance: bool = False  # the UNet outputs (eps, variance interpolation)

    def raw(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> Tensor:
        out = self.net(x, t).sample  # (B, C) or (B, 2C) channels
        if self.learned_variance and self.variance != "learned_range":
            out, _ = out.split(x.shape[1], dim=1)  # a learned log variance diffkit ignores
        return out


@dataclass(eq=False, kw_only=True)
class DiffusersTextUNet(DDPMModel):
    """A diffusers ``UNet2DConditionModel`` conditioned on prompt embeddings (DeepFloyd IF
    stage I), under the model contract. Its output keeps the learned variance channels
    (:func:`~diffkit.param.split_variance`). The unconditional partner of a prompt is
    the empty prompt, as in diffusers' pipeline; the UNet sees no attention mask, as
    there."""

    prompts: PromptEncoder
    dtype: torch.dtype = torch.float32
    conditioning: str = "text"  # type: ignore[assignment]
    _empty: Cond | None = None

    def inputs(self, x: Tensor, cond: Cond) -> tuple[Tensor, dict[str, Tensor]]:
        """The UNet's sample input and keyword arguments for state ``x`` under ``cond``."""
        return x, {}

    def raw(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> Tensor:
        if cond is None or cond.tokens is None:
            raise ValueError(f"this {self.name} model needs prompt embeddings")
        sample, extra = self.inputs(x, cond)
        return self.net(sample.to(self.dtype), t, encoder_hidden_states=cond.tokens.to(self.dtype),
                        **extra).sample  # fmt: skip

    def unconditional(self, cond: Cond) -> Cond:
        if self._empty is None:
            self._empty = self.prompts.embed([""])
        b = cond.batch_size or 1
        empty = self._empty.to(cond.tokens.device if cond.tokens is not None else "cpu")
        return replace(cond, tokens=empty.tokens.expand(b, -1, -1),  # type: ignore[union-attr]
                       mask=empty.mask.expand(b, -1))  # type: ignore[union-attr]  # fmt: skip


@dataclass(eq=False, kw_only=True)
class DiffusersUpscaler(DiffusersTextUNet):
    """DeepFloyd IF stage II: the UNet also sees the low-resolution image, upscaled and
    noised to ``noise_level`` (``cond.hint``, (B, C, H, W)), and that level as its class
    label (``cond.labels``); see :func:`upscale_condition`."""

    noising: DDPMSchedule  # the schedule that noises the upscaled image
    noise_level: int = 250

    def inputs(self, x: Tensor, cond: Cond) -> tuple[Tensor, dict[str, Tensor]]:
        if cond.hint is None or cond.labels is None:
            raise ValueError("stage II needs the upscaled image and its noise level")
        return torch.cat([x, cond.hint.to(x.dtype)], dim=1), {"class_labels": cond.labels}


def upscale_condition(model: DiffusersUpscaler, images: Tensor, prompts: Cond,
                      noise: Tensor) -> Cond:  # fmt: skip
    """Stage II's condition for stage I ``images`` (B, C, h, w) in [-1, 1]: bilinear
    upscaling to the model's size (corners aligned, as diffusers), noised to
    ``model.noise_level`` with ``noise`` (B, C, H, W); the level is the class label."""
    size = model.sample_shape[1:]
    up = torch.nn.functional.interpolate(images.float(), size, mode="bilinear",
                                         align_corners=True)  # fmt: skip
    level = torch.full((images.shape[0],), model.noise_level, dtype=torch.long)
    hint = model.noising.q_sample(up, level, noise.to(up))
    return replace(prompts, hint=hint, labels=level)


def resolve(source: Path | str) -> Path:
    """The local folder of ``source``: itself, or the Hugging Face cache's snapshot of
    ``hf:ORG/NAME`` (downloaded only if the cache lacks it and the hub is reachable)."""
    text = str(source)
    if not text.startswith(HF_PREFIX):
        return Path(text)
    repo = text[len(HF_PREFIX) :]
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise ForeignModelError(f"{text}: expected hf:ORG/NAME")
    hub = _import("huggingface_hub")
    try:
        return Path(hub.snapshot_download(repo, local_files_only=True))
    except Exception:  # not cached: try the hub, unless offline
        pass
    try:  # what diffkit reads: no safety checker, watermarker or pickled weights
        return Path(hub.snapshot_download(repo, ignore_patterns=SKIPPED_FILES))
    except Exception as exc:
        if "Gated" in type(exc).__name__:
            raise ForeignModelError(
                f"{text} is gated: accept its licence at https://huggingface.co/{repo} "
                "while logged in, then `hf auth login` here (or copy a cache that has it)"
            ) from None
        raise ForeignModelError(
            f"{text} is not in the local Hugging Face cache ({hub.constants.HF_HUB_CACHE}) "
            f"and cannot be downloaded here ({type(exc).__name__}); on a machine with "
            f"internet run `hf download {repo}` and copy the cache, or pass the folder a "
            f"pipeline was saved to"
        ) from None


def load_diffusers(
    source: Path | str,
    device: torch.device,
    *,
    dtype: str = "fp32",
    cache_dir: Path | None = None,
    offload: bool = False,
) -> DDPMPipeline:
    """A saved diffusers pipeline as a diffkit pipeline on ``device``: a DDPM/DDIM
    pipeline (``UNet2DModel``), or DeepFloyd IF stage I or II (``UNet2DConditionModel`` and
    a T5 encoder whose prompt embeddings are cached under ``cache_dir``). ``dtype`` is the
    UNet's (fp32, fp16, bf16; samplers keep their state in fp32); ``offload`` leaves the
    UNet on the CPU until :func:`on_device` moves it for a loop."""
    folder = resolve(source)
    index = _read_json(folder / MODEL_INDEX, source)
    if dtype not in DTYPES:
        raise ForeignModelError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    kind = index.get("_class_name", "pipeline")
    kind = str(kind[-1]) if isinstance(kind, list) and kind else str(kind)  # a custom one
    unet_class = _component(index, "unet", source)
    if kind in TEXT_PIPELINES:
        return _load_text(folder, source, index, device, DTYPES[dtype], cache_dir, offload)
    if unet_class == "DiffkitUNet":  # written by `diffkit export`: its run samples as it is
        origin = _read_json(folder / "unet" / "config.json", source).get("diffkit") or {}
        ckpt = origin.get("checkpoint", "named in unet/config.json")
        raise ForeignModelError(f"{source} is a diffkit export; sample the run it came from "
                                f"({ckpt})")  # fmt: skip
    if unet_class != "UNet2DModel":
        raise ForeignModelError(f"{source}: a {kind} with a {unet_class}; diffkit samples "
                                "unconditional UNet2DModel pipelines and DeepFloyd IF "
                                f"({', '.join(TEXT_PIPELINES)})")  # fmt: skip
    scheduler_class = _component(index, "scheduler", source)
    if scheduler_class not in DISCRETE_VP_SCHEDULERS:
        raise ForeignModelError(f"{source}: scheduler {scheduler_class} is not a discrete "
                                "variance-preserving diffusion diffkit can sample")  # fmt: skip
    unet_cfg = _read_json(folder / "unet" / "config.json", source)
    _check_unet(unet_cfg, source)
    sched_cfg = _read_json(folder / "scheduler" / "scheduler_config.json", source)
    conventions = scheduler_conventions(sched_cfg, source)
    learned = sched_cfg.get("variance_type") in ("learned", "learned_range")
    channels = unet_cfg.get("in_channels", 3)
    _check_out_channels(unet_cfg, channels, learned, sched_cfg, source)
    unet = _load_unet("UNet2DModel", folder, DTYPES[dtype], source)
    model = DiffusersUNet(
        net=_place(unet, device, offload),
        sample_shape=(channels, *_size(unet_cfg)),
        name=f"diffusers {kind}",
        learned_variance=learned,
        **conventions,
    )
    return DDPMPipeline(model, device)


def _load_text(
    folder: Path,
    source: object,
    index: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: Path | None,
    offload: bool,
) -> DDPMPipeline:
    """DeepFloyd IF stage I (``IFPipeline``) or II (``IFSuperResolutionPipeline``)."""
    kind = index["_class_name"]
    if _component(index, "unet", source) != "UNet2DConditionModel":
        raise ForeignModelError(f"{source}: a {kind} whose unet is not a UNet2DConditionModel")
    unet_cfg = _read_json(folder / "unet" / "config.json", source)
    sched_cfg = _read_json(folder / "scheduler" / "scheduler_config.json", source)
    conventions = scheduler_conventions(sched_cfg, source)
    learned = sched_cfg.get("variance_type") in ("learned", "learned_range")
    if sched_cfg.get("variance_type") == "learned":
        raise ForeignModelError(f"{source}: scheduler variance_type='learned' (a raw log "
                                "variance) is not read; IF's is learned_range")  # fmt: skip
    upscaler = kind == "IFSuperResolutionPipeline"
    channels = unet_cfg.get("in_channels", 3) // (2 if upscaler else 1)
    _check_out_channels(unet_cfg, channels, learned, sched_cfg, source)
    from diffkit.config.settings import Settings

    prompts = PromptEncoder(folder, cache_dir or Settings().cache_dir, device, dtype,
                            ForeignModelError)  # fmt: skip
    unet = _place(_load_unet("UNet2DConditionModel", folder, dtype, source), device, offload)
    common = {"net": unet, "sample_shape": (channels, *_size(unet_cfg)), "prompts": prompts,
              "dtype": dtype, "name": f"DeepFloyd IF {TEXT_PIPELINES[kind]}",
              **conventions}  # fmt: skip
    if upscaler:
        noising_cfg = _read_json(folder / "image_noising_scheduler" / "scheduler_config.json",
                                 source)  # fmt: skip
        noising = DDPMSchedule(diffusers_betas(noising_cfg))
        return DDPMPipeline(DiffusersUpscaler(noising=noising, **common), device)
    return DDPMPipeline(DiffusersTextUNet(**common), device)


def _check_out_channels(unet_cfg, channels: int, learned: bool, sched_cfg, source) -> None:
    if unet_cfg.get("out_channels", 3) != channels * (2 if learned else 1):
        raise ForeignModelError(f"{source}: unet out_channels {unet_cfg.get('out_channels')} "
                                f"does not fit {channels} image channels with variance_type "
                                f"{sched_cfg.get('variance_type')}")  # fmt: skip


def _size(unet_cfg: dict[str, Any]) -> tuple[int, int]:
    size = unet_cfg.get("sample_size", 32)
    return (size, size) if isinstance(size, int) else tuple(size)  # type: ignore[return-value]


def _load_unet(cls: str, folder: Path, dtype: torch.dtype, source: object):
    # Without accelerate diffusers warns and loads plainly; ask for that directly.
    plain = importlib.util.find_spec("accelerate") is None
    kwargs = {"torch_dtype": dtype, **weights_variant(folder / "unet", dtype),
              **({"low_cpu_mem_usage": False} if plain else {})}  # fmt: skip
    try:
        return getattr(_import("diffusers"), cls).from_pretrained(folder / "unet", **kwargs)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ForeignModelError(f"{source}: cannot load its unet ({first})") from None


def _place(net: torch.nn.Module, device: torch.device, offload: bool) -> torch.nn.Module:
    return (net if offload else net.to(device)).eval()


@contextmanager
def on_device(model: DDPMModel, device: torch.device) -> Iterator[None]:
    """Model CPU offload by hand: ``model.net`` on ``device`` for the block, back on the
    CPU after it (a no-op for a model already there)."""
    home = next(model.net.parameters()).device
    model.net.to(device)
    try:
        yield
    finally:
        model.net.to(home)
        if device.type == "cuda" and home != device:
            torch.cuda.empty_cache()


def scheduler_conventions(cfg: dict[str, Any], source: object = "scheduler") -> dict[str, Any]:
    """A diffusers scheduler config -> the :class:`DDPMModel` fields it implies (schedule,
    prediction, clip, spacing, steps_offset, variance); ForeignModelError naming the first
    field diffkit cannot honour."""

    def refuse(field: str, why: str) -> ForeignModelError:
        return ForeignModelError(f"{source}: scheduler {field}={cfg.get(field)!r}: {why}")

    prediction = PREDICTIONS.get(cfg.get("prediction_type", "epsilon"))
    if prediction is None:
        raise refuse("prediction_type", f"diffkit reads {', '.join(PREDICTIONS)}")
    threshold = None
    if cfg.get("thresholding"):  # replaces clip_sample, as in diffusers' DDPM step
        threshold = DynamicThreshold(float(cfg.get("dynamic_thresholding_ratio", 0.995)),
                                     float(cfg.get("sample_max_value", 1.0)))  # fmt: skip
    clip = bool(cfg.get("clip_sample", False))
    if clip and threshold is None and cfg.get("clip_sample_range", 1.0) != 1.0:
        raise refuse("clip_sample_range", "diffkit clips x0 to [-1, 1] only")
    if cfg.get("rescale_betas_zero_snr"):
        raise refuse("rescale_betas_zero_snr", "a zero terminal SNR schedule is not supported")
    if cfg.get("set_alpha_to_one") is False:
        raise refuse("set_alpha_to_one", "diffkit's samplers end at abar = 1 (clean data)")
    spacing = cfg.get("timestep_spacing", "leading")
    if spacing not in ("leading", "trailing", "linspace"):
        raise refuse("timestep_spacing", "diffkit spaces leading, trailing or linspace")
    variance_type = cfg.get("variance_type", "fixed_small")
    if variance_type not in VARIANCES:
        raise refuse("variance_type", f"diffkit reads {', '.join(VARIANCES)}")
    return {
        "schedule": DDPMSchedule(diffusers_betas(cfg, refuse)),
        "prediction": prediction,
        "clip": clip,
        "threshold": threshold,
        "spacing": spacing,
        "steps_offset": int(cfg.get("steps_offset", 0)),
        "variance": VARIANCES[variance_type],
    }


def diffusers_betas(cfg: dict[str, Any], refuse: Any = None) -> Tensor:
    """The betas (T,) float64 a scheduler config describes, rounded through float32 as
    diffusers stores them (``betas_for_alpha_bar`` for the cosine schedule)."""
    steps = int(cfg.get("num_train_timesteps", 1000))
    start, end = float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02))
    if cfg.get("trained_betas"):
        betas = torch.tensor(cfg["trained_betas"], dtype=torch.float32)
    else:
        match kind := cfg.get("beta_schedule", "linear"):
            case "linear":
                betas = torch.linspace(start, end, steps, dtype=torch.float32)
            case "scaled_linear":  # latent diffusion's: linear in sqrt(beta)
                betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float32) ** 2
            case "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine, capped at 0.999
                betas = cosine_betas(steps).float()
            case "sigmoid":  # GeoDiff's
                betas = torch.sigmoid(torch.linspace(-6, 6, steps)) * (end - start) + start
            case _:
                if refuse is not None:
                    raise refuse("beta_schedule", f"{kind} is not a schedule diffkit knows")
                raise ValueError(kind)
    return betas.double()


def _check_unet(cfg: dict[str, Any], source: object) -> None:
    for field in ("class_embed_type", "num_class_embeds"):
        if cfg.get(field) is not None:
            raise ForeignModelError(f"{source}: unet {field}={cfg[field]!r}: class-conditional "
                                    "diffusers UNets are not supported yet")  # fmt: skip
    if cfg.get("time_embedding_type", "positional") != "positional":
        raise ForeignModelError(f"{source}: unet time_embedding_type="
                                f"{cfg['time_embedding_type']!r}: a variance-exploding "
                                "(score SDE) model, not a DDPM")  # fmt: skip


def _component(index: dict[str, Any], name: str, source: object) -> str:
    entry = index.get(name)
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], str)):
        raise ForeignModelError(f"{source}: {MODEL_INDEX} has no {name} component")
    return entry[1]


def _read_json(path: Path, source: object) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ForeignModelError(f"{source}: {path.name} is missing ({path})") from None
    except (OSError, ValueError) as exc:
        raise ForeignModelError(f"{source}: unreadable {path} ({exc})") from None
    if not isinstance(data, dict):
        raise ForeignModelError(f"{source}: {path} is not a JSON object")
    return data


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ForeignModelError(f"{name} is not installed; {INSTALL}") from None
