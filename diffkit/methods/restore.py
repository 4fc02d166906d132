"""How a diffkit run's checkpoint becomes a model that samples: the pipeline class of
each model family, the checks before a tensor is read, and :func:`load_run_pipeline`.

Kept apart from :mod:`diffkit.methods.pipeline` (the base class that
:mod:`~diffkit.methods.ddpm` and :mod:`~diffkit.methods.flow` build on) and from
:mod:`diffkit.methods.load` (which also loads foreign models and ControlNets, whose base is
one of these runs) so the imports only point one way: pipeline <- ddpm, flow <- restore <-
controlnet <- load.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from diffkit.config.resolve import validate
from diffkit.config.run import GenerativeRunConfig
from diffkit.methods.ddpm import DDPMPipeline
from diffkit.methods.flow import FlowPipeline
from diffkit.methods.latent import check_embedded_codec, codec_from_checkpoint
from diffkit.methods.pipeline import Pipeline, check_weights, load_weights
from diffkit.methods.registry import METHODS, generative_methods
from diffkit.models.contract import Family, Model
from diffkit.nn.build import build_model, meta_model
from diffkit.runs.checkpoint import (
    CheckpointError,
    load_checkpoint,
)

if TYPE_CHECKING:
    from diffkit.models.codec import Codec
    from diffkit.runs.checkpoint import CheckpointHeader, TensorSpec

PIPELINES: dict[Family, type[Pipeline]] = {"ddpm": DDPMPipeline, "flow": FlowPipeline}
"""The sampling side of each model family."""


def pipeline_of(model: Model, device: torch.device, config: GenerativeRunConfig | None = None
                ) -> Pipeline:  # fmt: skip
    """The pipeline of a model's family: own runs pass their ``config``, foreign models not."""
    return PIPELINES[model.family](model, device, config)


def pipeline_for(
    cfg: GenerativeRunConfig, net: nn.Module, device: torch.device, codec: Codec | None = None
) -> Pipeline:
    """A diffkit run's network as a pipeline: its method makes the model (:data:`METHODS`)."""
    make = METHODS[cfg.method].model
    assert make is not None  # every GenerativeRunConfig names a generative method
    return pipeline_of(make(cfg, net, codec), device, cfg)


def load_run_pipeline(
    path: Path, file: Path, header, device: torch.device, use_ema: bool = True
) -> Pipeline:
    """A DDPM or flow run from its checkpoint ``file`` (header read): see
    :func:`diffkit.methods.load.load_pipeline`."""
    section = "ema" if use_ema else "model"
    cfg = generative_config(header.config, path)
    check_parts(cfg, header.section(section), header.section("vae"), path, section)
    ckpt = load_checkpoint(file, prefixes=(section, "vae"))
    return pipeline_from_parts(cfg, ckpt.section(section), ckpt.section("vae"), device, path)


def generative_config(config: dict, source: object) -> GenerativeRunConfig:
    """A checkpoint's config as the run config of its (generative) method."""
    method = METHODS.get(config.get("method"))  # type: ignore[arg-type]
    if method is None or not method.generative:
        raise CheckpointError(f"{source} is a {config.get('method')} run, not a generative "
                              f"model ({', '.join(generative_methods())})")  # fmt: skip
    try:
        return validate(method.config, config)
    except ValueError as exc:
        raise CheckpointError(f"checkpoint config: {exc}") from None


def check_parts(
    cfg: GenerativeRunConfig, weights: dict, vae: dict, source: object, section: str = "ema"
) -> None:
    """Before any tensor is read: the header's network (and VAE) tensors are exactly those
    of the models ``cfg`` describes, built on the meta device, and fit in memory."""
    check_weights(meta_model(cfg.model), weights, source, f"{section}.")
    if cfg.latent is not None:
        check_embedded_codec(cfg.latent, vae, source)


def pipeline_from_parts(
    cfg: GenerativeRunConfig,
    weights: dict[str, torch.Tensor],
    vae: dict[str, torch.Tensor],
    device: torch.device,
    source: Path,
) -> Pipeline:
    """A diffkit run's pipeline from its config, network weights and (latent models) the
    ``vae.*`` tensors, checked first by :func:`check_parts`."""
    net = build_model(cfg.model)
    load_weights(net, weights, source)
    codec = codec_from_checkpoint(cfg.latent, vae, device) if cfg.latent is not None else None
    return pipeline_for(cfg, net.to(device).eval(), device, codec)


def snapshot_specs(header: CheckpointHeader) -> tuple[dict[str, TensorSpec], bool]:
    """What each post-hoc EMA snapshot of the run whose last checkpoint has ``header`` must
    hold, and whether exactly (:func:`diffkit.training.snapshots.list_snapshots`): the
    float32 mean of every parameter of its network. For a generative run, the network its
    config describes, built on the meta device (and the checkpoint's EMA must match it),
    exactly; for the others, :func:`~diffkit.training.snapshots.ema_specs`."""
    from diffkit.nn.build import meta_model
    from diffkit.runs.checkpoint import check_specs, module_specs
    from diffkit.training.snapshots import ema_specs

    method = METHODS.get(header.config.get("method"))  # type: ignore[arg-type]
    if method is None or not method.generative:
        return ema_specs(header)
    net = meta_model(generative_config(header.config, header.path).model)
    check_specs(module_specs(net), header.section("ema"),
                f"{header.path}: ema weights do not match the model", "ema.")  # fmt: skip
    return {name: ("F32", tuple(p.shape)) for name, p in net.named_parameters()}, True
