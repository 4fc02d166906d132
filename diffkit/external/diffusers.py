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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffkit.external import HF_PREFIX, MODEL_INDEX
from diffkit.methods.ddpm import DDPMPipeline
from diffkit.models.conditioning import Cond
from diffkit.models.contract import DDPMModel
from diffkit.runs.checkpoint import CheckpointError
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
             "learned": None, "learned_range": None}  # fmt: skip
"""diffusers' variance types -> diffkit's (the _log forms are the same variance computed in
log space; None: learned by the network, not used by diffkit)."""


class ForeignModelError(CheckpointError):
    """A foreign model that cannot be found, read or honoured (one line, exit 2)."""


@dataclass(eq=False, kw_only=True)
class DiffusersUNet(DDPMModel):
    """A diffusers ``UNet2DModel`` under the model contract."""

    learned_variance: bool = False  # the UNet outputs (eps, variance interpolation)

    def raw(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> Tensor:
        out = self.net(x, t).sample  # (B, C) or (B, 2C) channels
        if self.learned_variance:  # diffusers' split: eps first, then the variance input
            out, _ = out.split(x.shape[1], dim=1)
        return out


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
    try:
        return Path(hub.snapshot_download(repo))
    except Exception as exc:
        raise ForeignModelError(
            f"{text} is not in the local Hugging Face cache ({hub.constants.HF_HUB_CACHE}) "
            f"and cannot be downloaded here ({type(exc).__name__}); on a machine with "
            f"internet run `hf download {repo}` and copy the cache, or pass the folder a "
            f"pipeline was saved to"
        ) from None


def load_diffusers(source: Path | str, device: torch.device) -> DDPMPipeline:
    """A saved diffusers DDPM/DDIM pipeline as a diffkit pipeline on ``device``."""
    folder = resolve(source)
    index = _read_json(folder / MODEL_INDEX, source)
    unet_class = _component(index, "unet", source)
    if unet_class != "UNet2DModel":
        raise ForeignModelError(f"{source}: its unet is a {unet_class}; diffkit samples "
                                "unconditional UNet2DModel pipelines")  # fmt: skip
    scheduler_class = _component(index, "scheduler", source)
    if scheduler_class not in DISCRETE_VP_SCHEDULERS:
        raise ForeignModelError(f"{source}: scheduler {scheduler_class} is not a discrete "
                                "variance-preserving diffusion diffkit can sample")  # fmt: skip
    unet_cfg = _read_json(folder / "unet" / "config.json", source)
    _check_unet(unet_cfg, source)
    sched_cfg = _read_json(folder / "scheduler" / "scheduler_config.json", source)
    conventions = scheduler_conventions(sched_cfg, source)
    learned = conventions["variance"] is None
    channels = unet_cfg.get("in_channels", 3)
    if unet_cfg.get("out_channels", 3) != channels * (2 if learned else 1):
        raise ForeignModelError(f"{source}: unet out_channels {unet_cfg.get('out_channels')} "
                                f"does not fit in_channels {channels} with variance_type "
                                f"{sched_cfg.get('variance_type')}")  # fmt: skip
    size = unet_cfg.get("sample_size", 32)
    h, w = (size, size) if isinstance(size, int) else size
    # Without accelerate diffusers warns and loads plainly; ask for that directly.
    plain = importlib.util.find_spec("accelerate") is None
    loader = _import("diffusers").UNet2DModel
    unet = loader.from_pretrained(
        folder / "unet", **({"low_cpu_mem_usage": False} if plain else {})
    )
    model = DiffusersUNet(net=unet.to(device).eval(), sample_shape=(channels, h, w),
                          name=f"diffusers {index.get('_class_name', 'pipeline')}",
                          learned_variance=learned, **conventions)  # fmt: skip
    return DDPMPipeline(model, device)


def scheduler_conventions(cfg: dict[str, Any], source: object = "scheduler") -> dict[str, Any]:
    """A diffusers scheduler config -> the :class:`DDPMModel` fields it implies (schedule,
    prediction, clip, spacing, steps_offset, variance); ForeignModelError naming the first
    field diffkit cannot honour."""

    def refuse(field: str, why: str) -> ForeignModelError:
        return ForeignModelError(f"{source}: scheduler {field}={cfg.get(field)!r}: {why}")

    prediction = PREDICTIONS.get(cfg.get("prediction_type", "epsilon"))
    if prediction is None:
        raise refuse("prediction_type", f"diffkit reads {', '.join(PREDICTIONS)}")
    if cfg.get("thresholding"):
        raise refuse("thresholding", "dynamic thresholding is not implemented; diffkit clips "
                     "x0 to [-1, 1] (clip_sample)")  # fmt: skip
    clip = bool(cfg.get("clip_sample", False))
    if clip and cfg.get("clip_sample_range", 1.0) != 1.0:
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
    return {"schedule": DDPMSchedule(diffusers_betas(cfg, refuse)), "prediction": prediction,
            "clip": clip, "spacing": spacing, "steps_offset": int(cfg.get("steps_offset", 0)),
            "variance": VARIANCES[variance_type]}  # fmt: skip


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
