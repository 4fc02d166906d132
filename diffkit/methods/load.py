"""How a checkpoint becomes a model that samples: :func:`load_pipeline` for diffkit runs
(:mod:`diffkit.methods.restore`), ControlNets over them (:mod:`diffkit.methods.controlnet`)
and diffusers pipelines (:mod:`diffkit.external.diffusers`)."""

from __future__ import annotations

from pathlib import Path

import torch

from diffkit.errors import HardwareError
from diffkit.external import is_foreign
from diffkit.methods.pipeline import Pipeline
from diffkit.methods.restore import PIPELINES, load_run_pipeline, pipeline_for, pipeline_of
from diffkit.runs.checkpoint import read_checkpoint_header, resolve_checkpoint

__all__ = ["PIPELINES", "load_pipeline", "pipeline_for", "pipeline_of"]


def load_pipeline(path: Path, device: torch.device | str = "cpu", use_ema: bool = True) -> Pipeline:
    """Rebuild a DDPM or rectified flow from a checkpoint or run folder: the file alone is
    enough (a latent model carries its autoencoder). The header is checked against the
    models its config describes, built on the meta device, before a tensor is read or a
    weight allocated: a config that claims a huge model costs nothing to refuse. A
    diffusers pipeline folder or ``hf:ORG/NAME`` loads through
    :mod:`diffkit.external.diffusers` (the ``[diffusers]`` extra)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HardwareError(f"device {device} was asked for, but this machine has no CUDA "
                            "GPU (or torch has no CUDA build); use device='cpu'")  # fmt: skip
    if is_foreign(path):  # a diffusers folder or hf:ORG/NAME (one set of weights, no EMA)
        from diffkit.external.diffusers import load_diffusers

        return load_diffusers(path, device)
    file = resolve_checkpoint(path)
    header = read_checkpoint_header(file)
    if header.config.get("method") == "controlnet":  # a ControlNet over a base model
        from diffkit.methods.controlnet import load_control_pipeline

        return load_control_pipeline(file, header, device, use_ema)
    return load_run_pipeline(path, file, header, device, use_ema)
