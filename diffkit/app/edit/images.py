"""The edits of one input image: SDEdit, inpainting, the forward process and denoising.
Images are (B, C, H, W) in [-1, 1]; each grid starts with the original."""

from __future__ import annotations

import torch

from diffkit.app.common import progress_total
from diffkit.app.edit.pipeline import (
    defaults,
    hinted_condition,
    open_model,
    prompt_condition,
    resident,
    with_hint,
)
from diffkit.app.edit.publish import publish
from diffkit.app.edit.requests import (
    ANCESTRAL,
    DenoiseRequest,
    EditResult,
    GuidedRequest,
    InpaintRequest,
    NoiseRequest,
    SdeditRequest,
)
from diffkit.app.report import QUIET, Reporter
from diffkit.app.room import check_edit_room
from diffkit.config.settings import Settings
from diffkit.errors import UsageError
from diffkit.external import is_foreign


def _open(req: GuidedRequest, settings: Settings, hints: bool):
    return open_model(req.model, settings, views=False, dtype=req.dtype, offload=req.offload,
                      no_ema=req.no_ema, hints=hints)  # fmt: skip


def _control_scale(req: SdeditRequest | InpaintRequest, hints) -> float | None:
    return req.control_scale if hints is not None else None


def sdedit(req: SdeditRequest, settings: Settings, report: Reporter = QUIET) -> EditResult:
    """SDEdit: noise the image part-way (to each start point) and denoise it, optionally
    towards the prompt and, for a ControlNet run, along the hint's edges."""
    from diffkit.edit.images import load_image
    from diffkit.edit.loops import sdedit as run

    pipe = _open(req, settings, hints=True)
    try:
        starts = [int(s) for s in req.start.split(",")]
    except ValueError:
        raise UsageError(f"--start {req.start}: expected comma-separated integers") from None
    part_way = "sdedit starts it part-way" if any(starts) else None
    sampler, guidance = defaults(pipe, req.sampler, req.guidance, 1.0, req.steps, part_way)
    pipe, hints = with_hint(pipe, req.hint, req.hint_is_edges, req.control_scale,
                            settings.data_dir)  # fmt: skip
    check_edit_room(pipe, len(starts), req.out, settings.runs_dir, grid=len(starts) + 1,
                    what=f"--start {req.start}: {len(starts)} images")  # fmt: skip
    x = load_image(req.image, pipe.model.sample_shape, settings.data_dir)
    cond, prompt = prompt_condition(pipe, req.prompt, 1, req.style)
    cond = hinted_condition(cond, hints, 1)
    outs = []
    for k in starts:
        total = progress_total(sampler, req.steps - k, 1, 1)
        with resident(pipe, req.offload), report.steps(f"sdedit from {k}", total) as tick:
            try:
                outs.append(run(pipe, x, k, sampler=sampler, steps=req.steps, cond=cond,
                                guidance=guidance, seed=req.seed, on_step=tick))  # fmt: skip
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    samples = torch.cat(outs).clamp(-1, 1)
    meta = {"op": "sdedit", "model": req.model, "image": req.image, "starts": starts,
            "prompt": prompt, "style": req.style, "steps": req.steps, "sampler": sampler,
            "guidance": guidance, "seed": req.seed, "hint": req.hint,
            "control_scale": _control_scale(req, hints)}  # fmt: skip
    columns = ["original", *(f"start {k}" for k in starts)]
    return publish("sdedit", req.out, settings.runs_dir, torch.cat([x, samples]),
                   len(starts) + 1, samples, meta, columns=columns)  # fmt: skip


def _completions(pipe, x, m, req: InpaintRequest, sampler: str, cond, guidance: float,
                 report: Reporter) -> torch.Tensor:  # fmt: skip
    """The request's completions of ``x`` outside the mask ``m``: RePaint's resampling
    schedule when ``req.resample`` is given, else plain replacement."""
    from diffkit.edit.loops import inpaint as replace
    from diffkit.edit.loops import repaint
    from diffkit.edit.repaint import jump_schedule

    common = {"steps": req.steps, "cond": cond, "guidance": guidance, "seed": req.seed}
    try:
        if req.resample is not None:
            jump, count = (int(v) for v in req.resample.split(","))
            moves = len(jump_schedule(req.steps, jump, count))
            with (
                resident(pipe, req.offload),
                report.steps(f"repaint, {req.n} completions", moves) as tick,
            ):
                return repaint(pipe, x, m, jump=jump, resample=count, on_step=tick, **common)
        total = progress_total(sampler, req.steps, 1, 1)
        with (
            resident(pipe, req.offload),
            report.steps(f"inpaint, {req.n} completions", total) as tick,
        ):
            return replace(pipe, x, m, sampler=sampler, on_step=tick, **common)
    except ValueError as exc:
        raise UsageError(
            f"--resample {req.resample}: {exc}" if req.resample else str(exc)
        ) from None


def inpaint(req: InpaintRequest, settings: Settings, report: Reporter = QUIET) -> EditResult:
    """Inpainting: regenerate a masked region; outside it the output equals the input. A
    ControlNet run draws the region along the hint's edges."""
    from diffkit.edit.images import box_mask, file_mask, load_image

    pipe = _open(req, settings, hints=True)
    pastes = "inpaint pastes the known region in after every step" if not req.resample else None
    sampler, guidance = defaults(pipe, req.sampler, req.guidance, 1.0, req.steps, pastes)
    shape = pipe.model.sample_shape
    m = file_mask(req.mask, shape) if req.mask is not None else box_mask(req.box, shape)  # type: ignore[arg-type]
    pipe, hints = with_hint(pipe, req.hint, req.hint_is_edges, req.control_scale,
                            settings.data_dir)  # fmt: skip
    check_edit_room(pipe, req.n, req.out, settings.runs_dir, rows=2 if guidance != 1.0 else 1,
                    grid=req.n + 2, hinted=hints is not None)  # fmt: skip
    x = load_image(req.image, shape, settings.data_dir).expand(req.n, *shape)
    cond, prompt = prompt_condition(pipe, req.prompt, req.n, req.style)
    cond = hinted_condition(cond, hints, req.n)
    samples = _completions(pipe, x, m, req, sampler, cond, guidance, report).clamp(-1, 1)
    meta = {"op": "inpaint", "model": req.model, "image": req.image, "mask": req.mask,
            "box": req.box, "resample": req.resample, "prompt": prompt, "style": req.style,
            "n": req.n, "steps": req.steps, "sampler": ANCESTRAL if req.resample else sampler,
            "guidance": guidance, "seed": req.seed, "hint": req.hint,
            "control_scale": _control_scale(req, hints)}  # fmt: skip
    grid = torch.cat([x[:1], x[:1] * (1 - m) - m, samples])  # original, masked (black), outputs
    columns = ["original", "masked", *(f"#{i + 1}" for i in range(req.n))]
    return publish("inpaint", req.out, settings.runs_dir, grid, req.n + 2, samples, meta,
                   columns=columns)  # fmt: skip


def _process(req: NoiseRequest, settings: Settings):
    """The forward process of the request and the (C, H, W) the image is drawn at: a
    model's schedule and size (the model is loaded for them), else the schedule named and
    the image's own size."""
    from diffkit.edit.images import image_shape
    from diffkit.schedules.forward import ForwardProcess

    if req.model is None:
        process = ForwardProcess() if req.flow else ForwardProcess.ddpm(req.schedule or "linear")
        return process, image_shape(req.image, settings.data_dir, req.size)
    # The forward process needs only the schedule: a diffusers UNet stays on the CPU.
    pipe = open_model(req.model, settings, views=False, dtype=req.dtype,
                      offload=is_foreign(req.model))  # fmt: skip
    try:
        return pipe.forward_process(), tuple(pipe.model.sample_shape)
    except ValueError as exc:
        raise UsageError(f"--model {req.model}: {exc}") from None


def noise(req: NoiseRequest, settings: Settings, report: Reporter = QUIET) -> EditResult:
    """The forward process q(x_t | x_0) of an image at the chosen noise levels, from a
    noise schedule alone (:mod:`diffkit.schedules.forward`) or a model's. Level k's noise is
    the k-th draw of ``torch.randn`` (the image's shape) from a CPU generator seeded with
    the request's seed."""
    from diffkit.edit.images import load_image
    from diffkit.schedules.forward import parse_levels

    process, shape = _process(req, settings)
    try:
        levels = process.levels(parse_levels(req.at))
    except ValueError as exc:
        raise UsageError(f"--at {req.at}: {exc}") from None
    check_edit_room(None, len(levels), req.out, settings.runs_dir, grid=len(levels) + 1,
                    image=tuple(shape), what=f"--at {req.at}: {len(levels)} images")  # fmt: skip
    x = load_image(req.image, shape, settings.data_dir)
    g = torch.Generator().manual_seed(req.seed)
    samples = torch.cat([process.noised(x, lv, torch.randn(x.shape, generator=g))
                         for lv in levels])  # fmt: skip
    ddpm = not process.is_flow
    meta = {"op": "noise", "model": req.model, "process": "flow" if process.is_flow else "ddpm",
            "schedule": req.schedule or "linear" if req.model is None and ddpm else None,
            "image": req.image, "shape": list(shape),
            "at": [int(v.at) if v.at.is_integer() else v.at for v in levels],
            "t": [v.t for v in levels],
            "timesteps": [v.timestep for v in levels] if ddpm else None,
            "signal": [v.signal for v in levels], "noise": [v.noise for v in levels],
            "seed": req.seed}  # fmt: skip
    grid = torch.cat([x, samples.clamp(-1, 1)])
    columns = ["original", *(v.label for v in levels)]
    return publish("noise", req.out, settings.runs_dir, grid, len(levels) + 1, samples, meta,
                   columns=columns)  # fmt: skip


def denoise(req: DenoiseRequest, settings: Settings, report: Reporter = QUIET) -> EditResult:
    """Noise an image to one grid point, then compare: the best Gaussian blur, the
    one-step x0 estimate and iterative denoising over the rest of the grid. The mean
    squared errors to the original are reported and recorded (``meta["mse"]``)."""
    from diffkit.edit.images import load_image
    from diffkit.edit.loops import noised
    from diffkit.edit.ops import best_blur, one_step_x0

    pipe = _open(req, settings, hints=False)
    part_way = "denoise starts it part-way" if req.start else None
    sampler, guidance = defaults(pipe, req.sampler, req.guidance, 1.0, req.steps, part_way)
    if not 0 <= req.start < req.steps:
        raise UsageError(f"--start must be between 0 and {req.steps - 1} for {req.steps} steps")
    check_edit_room(pipe, 4, req.out, settings.runs_dir, rows=2, grid=5, what="denoise's 4 images")
    x = load_image(req.image, pipe.model.sample_shape, settings.data_dir)
    cond, prompt = prompt_condition(pipe, req.prompt, 1)
    point = pipe.grid(req.steps)[req.start]
    g = torch.Generator().manual_seed(req.seed)
    noisy = noised(pipe, x, point, torch.randn(x.shape, generator=g))
    blurred, sigma = best_blur(noisy, x)
    gen = torch.Generator(pipe.device).manual_seed(req.seed + 1)
    total = progress_total(sampler, req.steps - req.start, 1, 1)
    with resident(pipe, req.offload):
        one = one_step_x0(pipe, noisy, float(point), cond, guidance)
        with report.steps(f"denoise from point {req.start}", total) as tick:
            many, _ = pipe.generate(noisy, sampler, req.steps, cond=cond, guidance=guidance,
                                    generator=gen, start=req.start, on_step=tick)  # fmt: skip
    methods = {"blur": blurred, "one_step": one, "iterative": many.float().cpu()}
    mse = {k: float((v.clamp(-1, 1) - x).pow(2).mean()) for k, v in methods.items()}
    samples = torch.cat([noisy, *methods.values()]).clamp(-1, 1)
    meta = {"op": "denoise", "model": req.model, "image": req.image, "start": req.start,
            "level": float(point), "prompt": prompt, "steps": req.steps, "sampler": sampler,
            "guidance": guidance, "blur_sigma": sigma, "mse": mse, "seed": req.seed}  # fmt: skip
    report.info("MSE to the original: " + ", ".join(f"{k} {v:.4f}" for k, v in mse.items()))
    grid = torch.cat([x, samples])  # original | noisy | blur | one step | iterative
    columns = ["original", "noisy", f"blur {sigma:g}", "one step", "iterative"]
    return publish("denoise", req.out, settings.runs_dir, grid, 5, samples, meta, columns=columns)
