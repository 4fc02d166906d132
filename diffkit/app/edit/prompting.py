"""Prompts to images, and prompts into a text model's embedding cache."""

from __future__ import annotations

import torch

from diffkit.app.common import progress_total
from diffkit.app.edit.pipeline import conditions, defaults, is_text, open_model, resident, styled
from diffkit.app.edit.publish import publish
from diffkit.app.edit.requests import EditResult, EmbedRequest, EmbedResult, SampleRequest
from diffkit.app.edit.upscale import single, upscale
from diffkit.app.report import QUIET, Reporter
from diffkit.app.room import check_edit_room
from diffkit.config.settings import Settings
from diffkit.errors import UsageError


def sample(req: SampleRequest, settings: Settings, report: Reporter = QUIET) -> EditResult:
    """Prompts -> images with classifier-free guidance: one row of ``req.n`` per prompt."""
    pipe = open_model(req.model, settings, views=False, dtype=req.dtype, offload=req.offload,
                      no_ema=req.no_ema)  # fmt: skip
    sampler, guidance = defaults(pipe, req.sampler, req.guidance, 3.0, req.steps)
    check_edit_room(pipe, len(req.prompts) * req.n, req.out, settings.runs_dir,
                    rows=2 if guidance != 1.0 else 1,
                    what=f"-n {req.n} x {len(req.prompts)} prompt(s)")  # fmt: skip
    conds = conditions(pipe, req.prompts, req.n, req.style)
    cond = conds[0]
    for c in conds[1:]:
        cond = cond.cat(c)  # (P * n) rows, prompt by prompt
    n, total = req.n, progress_total(sampler, req.steps, 1, 1)
    label = f"sample, {len(req.prompts)} x {n}"
    with resident(pipe, req.offload), report.steps(label, total) as tick:
        result = pipe.sample(len(req.prompts) * n, cond=cond, guidance=guidance, sampler=sampler,
                             steps=req.steps, seed=req.seed, on_step=tick)  # fmt: skip
    images = result.images.clamp(-1, 1)
    if req.upscale:
        ups = [upscale(pipe, images[i * n : (i + 1) * n], [p], req.style, single,
                       upscaler=req.upscaler, seed=req.seed + i, offload=req.offload,
                       dtype=req.dtype, settings=settings, report=report)
               for i, p in enumerate(req.prompts)]  # fmt: skip
        images = torch.cat(ups)
    meta = {"op": "sample", "model": req.model, "prompts": list(req.prompts),
            "style": req.style, "n": n, "steps": req.steps, "sampler": sampler,
            "guidance": guidance, "upscaler": req.upscaler if req.upscale else None,
            "seed": req.seed, "seconds_per_image": result.seconds_per_image}  # fmt: skip
    return publish("sample", req.out, settings.runs_dir, images, n, images, meta,
                   list(req.prompts))  # fmt: skip


def embed(req: EmbedRequest, settings: Settings) -> EmbedResult:
    """Embed prompts with a text model's encoder into the embedding cache, so that later
    edits need no encoder (prompts are stored as given, with the style if set; anagrams
    and hybrids prefix the default style themselves)."""
    pipe = open_model(req.model, settings, views=False, dtype=req.dtype,
                      offload=True)  # the UNet is not needed; it stays on the CPU  # fmt: skip
    if not is_text(pipe):
        raise UsageError(f"--model {req.model} is not a text model; it takes no prompts")
    texts = [styled(p, req.style) for p in req.prompts]
    encoder = pipe.model.prompts
    fresh = tuple((t, not encoder.cached(t)) for t in texts)
    encoder.embed(texts)
    return EmbedResult(encoder.dir, fresh)
