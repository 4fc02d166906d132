"""DeepFloyd IF stage II after an edit's stage I: the same prompts, the same composition."""

from __future__ import annotations

import torch

from diffkit.app.edit.pipeline import conditions, integrate, is_text
from diffkit.app.edit.requests import ANCESTRAL
from diffkit.app.report import Reporter
from diffkit.config.settings import Settings
from diffkit.errors import UsageError
from diffkit.external import is_foreign

UPSCALE_STEPS, UPSCALE_GUIDANCE = 50, 4.0  # diffusers' IF stage II defaults


def single(net, conds):
    """The combination of one prompt: the guided model itself, steered to ``conds[0]``."""
    return lambda x, t, _=None: net(x, t, conds[0])


def upscale(stage1, images: torch.Tensor, prompts: list[str] | tuple[str, ...],
            style: str | None, combine, *, upscaler: str, seed: int, offload: bool,
            dtype: str | None, settings: Settings, report: Reporter) -> torch.Tensor:  # fmt: skip
    """Stage I ``images`` (n, 3, 64, 64) -> IF stage II's (n, 3, 256, 256), under the
    same prompts and composition: ``combine(net, conds)`` builds the stage II network
    from the guided UNet and one condition per prompt (each carrying the upscaled image)."""
    from diffkit.edit.compose import with_guidance
    from diffkit.external.diffusers import DiffusersUpscaler, load_diffusers, upscale_condition

    if not is_text(stage1):
        raise UsageError("--upscale is for DeepFloyd IF stage I models")
    if not is_foreign(upscaler):
        raise UsageError(f"--upscaler {upscaler}: not a diffusers folder or hf:ORG/NAME")
    if offload:
        stage1.model.net.to("cpu")  # stage I is done
    pipe = load_diffusers(upscaler, stage1.device, dtype=dtype or "fp32",
                          cache_dir=settings.cache_dir, offload=offload)  # fmt: skip
    model = pipe.model
    if not isinstance(model, DiffusersUpscaler):
        raise UsageError(f"--upscaler {upscaler} is a {model.name}, not IF stage II")
    n = images.shape[0]
    g = torch.Generator().manual_seed(seed + 2)
    hint_noise = torch.randn(n, *model.sample_shape, generator=g)
    conds = [upscale_condition(model, images, c, hint_noise).to(pipe.device)
             for c in conditions(pipe, prompts, n, style)]  # fmt: skip
    net = combine(with_guidance(model.raw, model.unconditional, UPSCALE_GUIDANCE), conds)
    return integrate(pipe, net, ANCESTRAL, UPSCALE_STEPS, n, seed + 3, f"stage II, {n} images",
                     report, offload)  # fmt: skip
