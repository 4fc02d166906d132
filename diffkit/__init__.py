"""diffkit: train, sample, straighten, accelerate and edit diffusion models.

>>> import diffkit
>>> model = diffkit.load("runs/ddpm/20260101-120000-run")      # doctest: +SKIP
>>> images = model.sample(16, sampler="ddim", steps=50, seed=0).images  # (16, 1, 28, 28)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.2.0"

if TYPE_CHECKING:
    from diffkit.methods.pipeline import Pipeline


def load(path: str | Path, device: str = "auto", use_ema: bool = True) -> Pipeline:
    """Load a run folder or checkpoint file; the result has ``.sample(n, ...)``. ``device``
    is ``auto`` (CUDA when there is a GPU, as the CLI's default), ``cpu``, ``cuda`` or a
    torch device such as ``cuda:1``."""
    from diffkit.methods.load import load_pipeline

    if device == "auto":
        from diffkit.training.hardware import resolve_device

        device = resolve_device("auto")
    return load_pipeline(Path(path), device, use_ema=use_ema)


__all__ = ["__version__", "load"]
