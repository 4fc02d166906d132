"""The composing edits: one image under several prompts at once, each seen through its
view (anagram) or owning a part of the image (hybrid, factorize)."""

from __future__ import annotations

from dataclasses import replace

import torch

from diffkit.app.edit.pipeline import conditions, defaults, integrate, is_text, open_model
from diffkit.app.edit.publish import publish
from diffkit.app.edit.requests import (
    DEFAULT_STYLE,
    AnagramRequest,
    EditResult,
    FactorizeRequest,
    GuidedRequest,
    HybridRequest,
)
from diffkit.app.edit.upscale import upscale
from diffkit.app.report import QUIET, Reporter
from diffkit.config.settings import Settings
from diffkit.errors import UsageError


def _open(req: GuidedRequest, settings: Settings):
    return open_model(req.model, settings, views=True, dtype=req.dtype, offload=req.offload,
                      no_ema=req.no_ema)  # fmt: skip


def _composed(pipe, combine, prompts, req: AnagramRequest | HybridRequest | FactorizeRequest,
              label: str, report: Reporter, settings: Settings, grid: int):  # fmt: skip
    """The shared body of the composing ops: the model's defaults, one condition per
    prompt (text models: the default style unless told), the guided model combined by
    ``combine(net, conds)``, and ``req.n`` images (refused first if they and the folder
    with a grid of ``grid`` images cannot fit). Returns the images and the resolved
    sampler, guidance and style."""
    from diffkit.app.room import check_edit_room
    from diffkit.edit.compose import with_guidance

    sampler, guidance = defaults(pipe, req.sampler, req.guidance, 3.0, req.steps)
    rows = len(prompts) * (2 if guidance != 1.0 else 1)  # every prompt, guided, in one batch
    check_edit_room(pipe, req.n, req.out, settings.runs_dir, rows=rows, grid=grid)
    style = DEFAULT_STYLE if req.style is None and is_text(pipe) else req.style
    conds = [c.to(pipe.device) for c in conditions(pipe, prompts, req.n, style)]
    net = combine(with_guidance(pipe.model.raw, pipe.model.unconditional, guidance), conds)
    images = integrate(pipe, net, sampler, req.steps, req.n, req.seed,
                       f"{label}, {req.n} images", report, req.offload)  # fmt: skip
    return images, sampler, guidance, style


def _upscaled(pipe, images, prompts, style, combine, req, settings, report):
    return upscale(pipe, images, prompts, style, combine, upscaler=req.upscaler, seed=req.seed,
                   offload=req.offload, dtype=req.dtype, settings=settings,
                   report=report)  # fmt: skip


def anagram(req: AnagramRequest, settings: Settings, report: Reporter = QUIET) -> EditResult:
    """A visual anagram: one image that reads as each prompt under its view. The grid's
    row k shows the images under view k."""
    from diffkit.edit.compose import anagram as combine
    from diffkit.edit.views import check_orthogonal, view

    pipe = _open(req, settings)
    names = [v.strip() for v in req.views.split(",")]
    if len(names) != len(req.prompts):
        raise UsageError(f"--views gives {len(names)} views for {len(req.prompts)} prompts")
    try:
        chosen = [view(v) for v in names]
        for v in chosen:
            check_orthogonal(v, pipe.model.sample_shape)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--views: {exc}") from None
    images, sampler, guidance, style = _composed(
        pipe, lambda net, conds: combine(net, conds, chosen), req.prompts, req, "anagram",
        report, settings, len(chosen) * req.n)  # fmt: skip
    if req.upscale:

        def viewed(net, conds):  # stage II sees each view of the upscaled image too
            conds = [replace(c, hint=v.apply(c.hint)) for c, v in zip(conds, chosen, strict=True)]
            return combine(net, conds, chosen)

        images = _upscaled(pipe, images, req.prompts, style, viewed, req, settings, report)
    grid = torch.cat([v.apply(images) for v in chosen])  # row k: the images under view k
    meta = {"op": "anagram", "model": req.model, "prompts": list(req.prompts), "style": style,
            "views": names, "n": req.n, "steps": req.steps, "sampler": sampler,
            "guidance": guidance, "upscaler": req.upscaler if req.upscale else None,
            "seed": req.seed}  # fmt: skip
    labels = [f"{v}: {p}" for v, p in zip(names, req.prompts, strict=True)]
    return publish("anagram", req.out, settings.runs_dir, grid, req.n, images, meta, labels)


def hybrid(req: HybridRequest, settings: Settings, report: Reporter = QUIET) -> EditResult:
    """A hybrid image: the low frequencies of one prompt, the high ones of another. The
    grid's second row is what the eye sees from afar."""
    from diffkit.edit.compose import factorized
    from diffkit.edit.filters import highpass, lowpass

    pipe = _open(req, settings)
    lo, hi = lowpass(req.sigma, req.kernel), highpass(req.sigma, req.kernel)
    prompts = [req.low, req.high]
    images, sampler, guidance, style = _composed(
        pipe, lambda net, conds: factorized(net, conds, [lo, hi]), prompts, req, "hybrid",
        report, settings, 2 * req.n)  # fmt: skip
    if req.upscale:  # the same bands, in stage II's pixels (sigma scaled with the image)
        scale = 4  # 64 -> 256 px
        k = 4 * req.kernel + (1 - (4 * req.kernel) % 2)  # odd, covering the same extent
        bands = [lowpass(req.sigma * scale, k), highpass(req.sigma * scale, k)]
        images = _upscaled(pipe, images, prompts, style,
                           lambda net, conds: factorized(net, conds, bands), req, settings,
                           report)  # fmt: skip
        lo = bands[0]
    grid = torch.cat([images, lo(images)])  # row 2: what the eye sees from afar
    meta = {"op": "hybrid", "model": req.model, "low": req.low, "high": req.high,
            "style": style, "sigma": req.sigma, "kernel": req.kernel, "n": req.n,
            "steps": req.steps, "sampler": sampler, "guidance": guidance,
            "upscaler": req.upscaler if req.upscale else None, "seed": req.seed}  # fmt: skip
    labels = [f"{req.high} (near)", f"{req.low} (far)"]
    return publish("hybrid", req.out, settings.runs_dir, grid, req.n, images, meta, labels)


def _parts(req: FactorizeRequest, shape: tuple[int, ...]):
    """The filters of the request's split, checked to sum to the identity on ``shape``."""
    from diffkit.edit.filters import bands, check_partition, color_split

    try:
        if req.split == "color":
            if shape[0] != 3:
                raise ValueError("a colour split needs an RGB model")
            parts = color_split()
        else:
            parts = bands([float(v) for v in req.sigmas.split(",")], req.kernel)
        check_partition(parts, shape)
    except ValueError as exc:
        raise UsageError(f"--{'split' if req.split == 'color' else 'sigmas'}: {exc}") from None
    if len(parts) != len(req.prompts):
        raise UsageError(f"the {req.split} split has {len(parts)} parts for "
                         f"{len(req.prompts)} prompts")  # fmt: skip
    return parts


def factorize(req: FactorizeRequest, settings: Settings, report: Reporter = QUIET) -> EditResult:
    """Factorized diffusion: each prompt controls one part of a split of the image into
    parts that sum to it. The grid shows the image, then each part."""
    from diffkit.edit.compose import factorized

    pipe = _open(req, settings)
    parts = _parts(req, pipe.model.sample_shape)
    images, sampler, guidance, style = _composed(
        pipe, lambda net, conds: factorized(net, conds, parts), req.prompts, req, "factorize",
        report, settings, (1 + len(parts)) * req.n)  # fmt: skip
    grid = torch.cat([images, *(f(images) for f in parts)])  # the image, then each part
    meta = {"op": "factorize", "model": req.model, "prompts": list(req.prompts),
            "split": req.split, "sigmas": req.sigmas if req.split == "bands" else None,
            "kernel": req.kernel, "style": style, "n": req.n, "steps": req.steps,
            "sampler": sampler, "guidance": guidance, "seed": req.seed}  # fmt: skip
    labels = ["image", *(f"part {i + 1}: {p}" for i, p in enumerate(req.prompts))]
    return publish("factorize", req.out, settings.runs_dir, grid, req.n, images, meta, labels)
