"""Samplers: pure functions ``(model, x, timesteps, ...) -> x0``.

``model`` is a :data:`Denoiser`: ``(x_t, t) -> (eps, x0)``. Build one from a network with
:func:`make_denoiser`, or write one by hand (tests use the exact denoiser of Gaussian data).
"""

from diffkit.samplers.common import Denoiser, make_denoiser
from diffkit.samplers.ddim import ddim_sample
from diffkit.samplers.ddpm import Variance, ddpm_sample

__all__ = ["Denoiser", "Variance", "ddim_sample", "ddpm_sample", "make_denoiser"]
