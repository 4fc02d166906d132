"""`diffkit edit`: image editing with a diffusion model, on diffkit's own class-conditional
runs (a prompt is a class) and on DeepFloyd IF (a prompt is text)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Literal

import typer

from diffkit.app.common import hinted, model_class_names, parse_classes, progress_total
from diffkit.cli import console
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.options import (
    ControlScale,
    DataDir,
    Device,
    HintIsEdges,
    HintSpec,
    NoEma,
    RunsDir,
    Seed,
    in_range,
    machine_settings,
)

app = typer.Typer(
    help="Edit images with a diffusion model: visual anagrams, hybrids, SDEdit, inpainting.",
    no_args_is_help=True,
)

DEFAULT_MODEL = "hf:DeepFloyd/IF-I-M-v1.0"
DEFAULT_UPSCALER = "hf:DeepFloyd/IF-II-M-v1.0"
DEFAULT_STYLE = "an oil painting of"  # anagrams and hybrids on text models (docs/editing.md)
DEFAULT_TEXT_PROMPT = "a high quality photo"  # the seeds' prompt for SDEdit and denoising
TEXT_GUIDANCE = 7.0  # the seeds' w on IF stage I
UPSCALE_STEPS, UPSCALE_GUIDANCE = 50, 4.0  # diffusers' IF stage II defaults

ModelSource = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="A diffkit run or checkpoint, or a diffusers folder or hf:ORG/NAME (DeepFloyd IF).",
    ),
]
Steps = Annotated[int, typer.Option(help="Sampler steps.", min=1)]
Sampler = Annotated[
    str | None,
    typer.Option(
        help="Sampler (ddpm, ddim, dpm++2m or an ODE solver; default ddpm on text models, "
        "as IF's pipeline, ddim otherwise).",
        show_default=False,
    ),
]
Guidance = Annotated[
    float | None,
    typer.Option(
        help="Classifier-free guidance scale w (1 = plain conditional; default 7 on text "
        "models, the op's own on class models).",
        callback=in_range(0.0),
        show_default=False,
    ),
]
Out = Annotated[
    Path | None,
    typer.Option(help="Output folder (default RUNS_DIR/edit/<stamp>-<op>).", show_default=False),
]
Image = Annotated[
    str,
    typer.Option(
        help="An image file, or a dataset item DATASET:SPLIT:INDEX (mnist:test:0).",
        show_default=False,
    ),
]
Prompt = Annotated[
    str | None,
    typer.Option(
        help="What to steer towards: a class (index or name) or, on text models, text "
        f'(default "{DEFAULT_TEXT_PROMPT}" there).',
        show_default=False,
    ),
]
Style = Annotated[
    str | None,
    typer.Option(
        help="Text models: a prefix for every prompt (anagram and hybrid default to "
        f'"{DEFAULT_STYLE}"; "" for none).',
        show_default=False,
    ),
]
Dtype = Annotated[
    Literal["fp32", "fp16", "bf16"] | None,
    typer.Option(help="diffusers models: the UNet's precision (default fp32).", show_default=False),
]
Offload = Annotated[
    bool,
    typer.Option(
        "--offload", help="diffusers models: each network on the device only while it runs."
    ),
]
Upscale = Annotated[
    bool, typer.Option("--upscale", help="Text models: upscale with IF stage II (--upscaler).")
]
Upscaler = Annotated[
    str, typer.Option(help="The stage II pipeline for --upscale (a folder or hf:ORG/NAME).")
]


def _open(source: str, device, data_dir, runs_dir, no_ema: bool, *, views: bool,
          dtype: str | None = None, offload: bool = False, hints: bool = False):  # fmt: skip
    """The pipeline of ``source`` (diffkit run or diffusers pipeline) and the settings; a
    ControlNet run only for the ops that take a hint (``hints``)."""
    from diffkit.training.hardware import resolve_device

    settings = machine_settings(data_dir, runs_dir, device)
    where = resolve_device(settings.device)
    if _foreign(source):
        from diffkit.external.diffusers import load_diffusers

        pipe = load_diffusers(source, where, dtype=dtype or "fp32",
                              cache_dir=settings.cache_dir, offload=offload)  # fmt: skip
        return pipe, settings
    if dtype is not None or offload:
        raise UsageError("--dtype and --offload are for diffusers models; diffkit runs use "
                         "the precision they were trained in")  # fmt: skip
    if not Path(source).exists():
        raise UsageError(f"--model {source}: no such run, checkpoint or pipeline folder")
    from diffkit.methods.load import load_pipeline

    pipe = load_pipeline(Path(source), where, use_ema=not no_ema)
    from diffkit.methods.controlnet import is_controlled

    if is_controlled(pipe.model) and not hints:
        raise UsageError(f"{source} is a ControlNet: sdedit and inpaint take its --hint; this "
                         "op would need a hint per view or prompt (use the base run)")  # fmt: skip
    if pipe.model.codec is not None:
        why = ("views and filters act on pixels, and a VAE is not equivariant to flips"
               if views else "editing latent models is not supported yet")  # fmt: skip
        raise UsageError(f"{source} is a latent model: {why}")
    return pipe, settings


def _text(pipe) -> bool:
    return pipe.model.conditioning == "text"


def _defaults(pipe, sampler: str | None, guidance: float | None, class_guidance: float):
    """The sampler and guidance scale an op uses when not told."""
    sampler = sampler or ("ddpm" if _text(pipe) else "ddim")
    if guidance is None:
        guidance = TEXT_GUIDANCE if _text(pipe) else class_guidance
    return sampler, guidance


def _styled(prompt: str, style: str | None) -> str:
    return f"{style} {prompt}" if style else prompt


def _cond(pipe, prompts: list[str], n: int, style: str | None = None):
    """Each prompt as a condition of ``n`` rows: its text embeddings (text models, with
    ``style`` prefixed) or its class."""
    import torch

    from diffkit.models.conditioning import Cond

    if _text(pipe):
        texts = [_styled(p, style) for p in prompts]
        embeds = pipe.model.prompts.embed(texts)  # (P, L, D): one encoder load for all
        return [Cond(tokens=embeds.tokens[i : i + 1].expand(n, -1, -1),
                     mask=embeds.mask[i : i + 1].expand(n, -1))  # type: ignore[index]
                for i in range(len(texts))]  # fmt: skip
    if style is not None:
        raise UsageError("--style is for text models; this model's prompts are its classes")
    if pipe.num_classes is None:
        raise UsageError("this model is unconditional; it takes no prompt")
    dataset = pipe.config.data.dataset if pipe.config is not None else "this model"
    out = []
    for p in prompts:
        picked = parse_classes([p], dataset, pipe.num_classes, model_class_names(pipe))
        if len(picked) != 1:
            raise UsageError(f"prompt {p!r} names {len(picked)} classes; give one")
        out.append(Cond(labels=torch.full((n,), picked[0], dtype=torch.long)))
    return out


def _prompt(pipe, prompt: str | None) -> str | None:
    """An op's optional prompt; text models always need one."""
    return DEFAULT_TEXT_PROMPT if prompt is None and _text(pipe) else prompt


def _hinted(pipe, hint: str | None, is_edges: bool, scale: float, data_dir):
    """The pipeline steered at ``scale`` and the one hint of ``--hint`` (a ControlNet run),
    or None; hints steer one image, so a SPEC naming several is refused."""
    control = {"scale": scale, "start": 0.0, "end": 1.0, "guess": False}
    pipe, hints = hinted(pipe, hint, is_edges, control, data_dir)
    if hints is not None and len(hints) != 1:
        raise UsageError(f"--hint {hint} names {len(hints)} images; an edit takes one")
    return pipe, hints


def _with_hint(cond, hints, n: int):
    """``cond`` (or none) with the hint in each of its ``n`` rows."""
    from dataclasses import replace

    from diffkit.models.conditioning import Cond

    if hints is None:
        return cond
    maps = hints.maps[:1].expand(n, -1, -1, -1)  # (n, 1, H, W)
    return Cond(hint=maps) if cond is None else replace(cond, hint=maps)


def _resident(pipe, offload: bool):
    """The context a sampling loop runs in: the UNet moved to the device for it under
    ``--offload``."""
    if not offload:
        return nullcontext()
    from diffkit.external.diffusers import on_device

    return on_device(pipe.model, pipe.device)


def _check_sampler(pipe, sampler: str, steps: int) -> None:
    try:
        pipe.check(sampler, steps)
        pipe.options(sampler, {})
    except ValueError as exc:
        raise UsageError(f"--sampler/--steps: {exc}") from None


def _publish(
    op: str,
    out: Path | None,
    runs_dir: Path,
    grid,
    nrow: int,
    samples,
    meta,
    labels=None,
    columns=None,
) -> Path:
    """grid.png, one PNG per sample, samples.safetensors and edit.json, written beside and
    moved in whole."""
    import shutil
    from datetime import datetime

    from safetensors.torch import save_file
    from torchvision.utils import save_image

    from diffkit.app.common import free_path
    from diffkit.runs.layout import write_json
    from diffkit.runs.plots import save_grid

    folder = out or free_path(runs_dir / "edit" / f"{datetime.now():%Y%m%d-%H%M%S}-{op}")
    if folder.exists():
        raise UsageError(f"--out {folder} already exists")
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_grid(grid, tmp / "grid.png", nrow=nrow, row_labels=labels, col_labels=columns)
    for i, image in enumerate(samples):
        save_image((image.float() + 1) / 2, tmp / f"{i:03d}.png")
    save_file({"samples": samples.float().contiguous()}, str(tmp / "samples.safetensors"))
    write_json(tmp / "edit.json", meta)
    tmp.rename(folder)
    return folder


def _integrate(pipe, net, sampler: str, steps: int, n: int, seed: int, label: str,
               offload: bool = False):  # fmt: skip
    """``n`` images from seeded noise under a combined network, (n, C, H, W) in [-1, 1]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, *pipe.model.sample_shape, generator=g).to(pipe.device)
    gen = torch.Generator(pipe.device).manual_seed(seed + 1)
    opts = pipe.options(sampler, {})
    with (
        _resident(pipe, offload),
        console.steps(label, progress_total(sampler, steps, 1, 1)) as tick,
    ):
        x, _ = pipe.integrate(net, noise, sampler, steps, opts, gen, tick)
    return x.float().cpu().clamp(-1, 1)


def _composed(pipe, combine, prompts: list[str], *, n: int, steps: int, sampler: str | None,
              guidance: float | None, style: str | None, seed: int, offload: bool,
              label: str):  # fmt: skip
    """The shared body of the composing ops (anagram, hybrid, factorize): the model's
    defaults, one condition per prompt (text models: the default style unless told), the
    guided model combined by ``combine(net, conds)``, and ``n`` images. Returns the images
    and the resolved sampler, guidance and style."""
    from diffkit.edit.compose import with_guidance

    sampler, guidance = _defaults(pipe, sampler, guidance, 3.0)
    _check_sampler(pipe, sampler, steps)
    style = DEFAULT_STYLE if style is None and _text(pipe) else style
    conds = [c.to(pipe.device) for c in _cond(pipe, prompts, n, style)]
    net = combine(with_guidance(pipe.model.raw, pipe.model.unconditional, guidance), conds)
    images = _integrate(pipe, net, sampler, steps, n, seed, f"{label}, {n} images", offload)
    return images, sampler, guidance, style


def _single(net, conds):
    """The combination of one prompt: the guided model itself, steered to ``conds[0]``."""
    return lambda x, t, _=None: net(x, t, conds[0])


def _upscale(stage1, images, prompts: list[str], style: str | None, combine, *, upscaler: str,
             seed: int, offload: bool, dtype: str | None, settings):  # fmt: skip
    """Stage I ``images`` (n, 3, 64, 64) -> IF stage II's (n, 3, 256, 256), under the
    same prompts and composition: ``combine(net, conds)`` builds the stage II network
    from the guided UNet and one condition per prompt (each carrying the upscaled image)."""
    import torch

    from diffkit.edit.compose import with_guidance
    from diffkit.external.diffusers import DiffusersUpscaler, load_diffusers, upscale_condition

    if not _text(stage1):
        raise UsageError("--upscale is for DeepFloyd IF stage I models")
    if not _foreign(upscaler):
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
             for c in _cond(pipe, prompts, n, style)]  # fmt: skip
    net = combine(with_guidance(model.raw, model.unconditional, UPSCALE_GUIDANCE), conds)
    return _integrate(pipe, net, "ddpm", UPSCALE_STEPS, n, seed + 3, f"stage II, {n} images",
                      offload)  # fmt: skip


@app.command("anagram")
@handle_errors
def anagram(
    prompts: Annotated[list[str], typer.Argument(help="One prompt per view.", show_default=False)],
    views: Annotated[
        str,
        typer.Option(
            help="Comma-separated views, one per prompt (identity, flip, mirror, rot90, "
            "rot180, rot270, transpose, negate, skew, jigsaw)."
        ),
    ] = "identity,flip",
    model: ModelSource = DEFAULT_MODEL,
    n: Annotated[int, typer.Option("-n", "--num-images", help="Images.", min=1)] = 4,
    steps: Steps = 50,
    sampler: Sampler = None,
    guidance: Guidance = None,
    style: Style = None,
    upscale: Upscale = False,
    upscaler: Upscaler = DEFAULT_UPSCALER,
    seed: Seed = None,
    out: Out = None,
    dtype: Dtype = None,
    offload: Offload = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """A visual anagram: one image that reads as each prompt under its view."""
    import torch

    from diffkit.edit.compose import anagram as combine
    from diffkit.edit.views import check_orthogonal, view

    pipe, settings = _open(model, device, data_dir, runs_dir, no_ema, views=True, dtype=dtype,
                           offload=offload)  # fmt: skip
    names = [v.strip() for v in views.split(",")]
    if len(names) != len(prompts):
        raise UsageError(f"--views gives {len(names)} views for {len(prompts)} prompts")
    try:
        chosen = [view(v) for v in names]
        for v in chosen:
            check_orthogonal(v, pipe.model.sample_shape)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--views: {exc}") from None
    seed = seed or 0
    images, sampler, guidance, style = _composed(
        pipe, lambda net, conds: combine(net, conds, chosen), prompts, n=n, steps=steps,
        sampler=sampler, guidance=guidance, style=style, seed=seed, offload=offload,
        label="anagram")  # fmt: skip
    if upscale:

        def viewed(net, conds):  # stage II sees each view of the upscaled image too
            from dataclasses import replace

            conds = [replace(c, hint=v.apply(c.hint)) for c, v in zip(conds, chosen, strict=True)]
            return combine(net, conds, chosen)

        images = _upscale(pipe, images, prompts, style, viewed, upscaler=upscaler, seed=seed,
                          offload=offload, dtype=dtype, settings=settings)  # fmt: skip
    grid = torch.cat([v.apply(images) for v in chosen])  # row k: the images under view k
    meta = {"op": "anagram", "model": model, "prompts": prompts, "style": style,
            "views": names, "n": n, "steps": steps, "sampler": sampler, "guidance": guidance,
            "upscaler": upscaler if upscale else None, "seed": seed}  # fmt: skip
    labels = [f"{v}: {p}" for v, p in zip(names, prompts, strict=True)]
    path = _publish("anagram", out, settings.runs_dir, grid, n, images, meta, labels)
    console.out.print(str(path))


@app.command("hybrid")
@handle_errors
def hybrid(
    low: Annotated[str, typer.Argument(help="Prompt seen from afar (low frequencies).")],
    high: Annotated[str, typer.Argument(help="Prompt seen up close (high frequencies).")],
    model: ModelSource = DEFAULT_MODEL,
    sigma: Annotated[float, typer.Option(help="Gaussian blur sigma, pixels.", min=0.1)] = 2.0,
    kernel: Annotated[int, typer.Option(help="Blur kernel size (odd).", min=1)] = 33,
    n: Annotated[int, typer.Option("-n", "--num-images", help="Images.", min=1)] = 4,
    steps: Steps = 50,
    sampler: Sampler = None,
    guidance: Guidance = None,
    style: Style = None,
    upscale: Upscale = False,
    upscaler: Upscaler = DEFAULT_UPSCALER,
    seed: Seed = None,
    out: Out = None,
    dtype: Dtype = None,
    offload: Offload = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """A hybrid image: the low frequencies of one prompt, the high ones of another."""
    import torch

    from diffkit.edit.compose import factorized
    from diffkit.edit.filters import highpass, lowpass

    if kernel % 2 == 0:
        raise UsageError("--kernel must be odd")
    pipe, settings = _open(model, device, data_dir, runs_dir, no_ema, views=True, dtype=dtype,
                           offload=offload)  # fmt: skip
    lo, hi = lowpass(sigma, kernel), highpass(sigma, kernel)
    seed = seed or 0
    images, sampler, guidance, style = _composed(
        pipe, lambda net, conds: factorized(net, conds, [lo, hi]), [low, high], n=n,
        steps=steps, sampler=sampler, guidance=guidance, style=style, seed=seed,
        offload=offload, label="hybrid")  # fmt: skip
    if upscale:  # the same bands, in stage II's pixels (sigma scaled with the image)
        scale = 4  # 64 -> 256 px
        k = 4 * kernel + (1 - (4 * kernel) % 2)  # odd, covering the same extent
        bands = [lowpass(sigma * scale, k), highpass(sigma * scale, k)]
        images = _upscale(pipe, images, [low, high], style,
                          lambda net, conds: factorized(net, conds, bands), upscaler=upscaler,
                          seed=seed, offload=offload, dtype=dtype, settings=settings)  # fmt: skip
        lo = bands[0]
    grid = torch.cat([images, lo(images)])  # row 2: what the eye sees from afar
    meta = {"op": "hybrid", "model": model, "low": low, "high": high, "style": style,
            "sigma": sigma, "kernel": kernel, "n": n, "steps": steps, "sampler": sampler,
            "guidance": guidance, "upscaler": upscaler if upscale else None,
            "seed": seed}  # fmt: skip
    labels = [f"{high} (near)", f"{low} (far)"]
    path = _publish("hybrid", out, settings.runs_dir, grid, n, images, meta, labels)
    console.out.print(str(path))


@app.command("factorize")
@handle_errors
def factorize(
    prompts: Annotated[
        list[str], typer.Argument(help="One prompt per part, coarsest first.", show_default=False)
    ],
    split: Annotated[
        Literal["bands", "color"],
        typer.Option(
            help="bands: Gaussian frequency bands (--sigmas); color: grayscale, then colour."
        ),
    ] = "bands",
    sigmas: Annotated[
        str, typer.Option(help="bands: strictly decreasing blur sigmas, one fewer than prompts.")
    ] = "4,1",
    kernel: Annotated[int, typer.Option(help="Blur kernel size (odd).", min=1)] = 33,
    model: ModelSource = DEFAULT_MODEL,
    n: Annotated[int, typer.Option("-n", "--num-images", help="Images.", min=1)] = 4,
    steps: Steps = 50,
    sampler: Sampler = None,
    guidance: Guidance = None,
    style: Style = None,
    seed: Seed = None,
    out: Out = None,
    dtype: Dtype = None,
    offload: Offload = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """Factorized diffusion: each prompt controls one part of a split of the image into
    parts that sum to it (frequency bands, or grayscale and colour)."""
    import torch

    from diffkit.edit.compose import factorized
    from diffkit.edit.filters import bands, check_partition, color_split

    if kernel % 2 == 0:
        raise UsageError("--kernel must be odd")
    pipe, settings = _open(model, device, data_dir, runs_dir, no_ema, views=True, dtype=dtype,
                           offload=offload)  # fmt: skip
    try:
        if split == "color":
            if pipe.model.sample_shape[0] != 3:
                raise ValueError("a colour split needs an RGB model")
            parts = color_split()
        else:
            parts = bands([float(v) for v in sigmas.split(",")], kernel)
        check_partition(parts, pipe.model.sample_shape)
    except ValueError as exc:
        raise UsageError(f"--{'split' if split == 'color' else 'sigmas'}: {exc}") from None
    if len(parts) != len(prompts):
        raise UsageError(f"the {split} split has {len(parts)} parts for {len(prompts)} prompts")
    seed = seed or 0
    images, sampler, guidance, style = _composed(
        pipe, lambda net, conds: factorized(net, conds, parts), prompts, n=n, steps=steps,
        sampler=sampler, guidance=guidance, style=style, seed=seed, offload=offload,
        label="factorize")  # fmt: skip
    grid = torch.cat([images, *(f(images) for f in parts)])  # the image, then each part
    meta = {"op": "factorize", "model": model, "prompts": prompts, "split": split,
            "sigmas": sigmas if split == "bands" else None, "kernel": kernel, "style": style,
            "n": n, "steps": steps, "sampler": sampler, "guidance": guidance,
            "seed": seed}  # fmt: skip
    labels = ["image", *(f"part {i + 1}: {p}" for i, p in enumerate(prompts))]
    path = _publish("factorize", out, settings.runs_dir, grid, n, images, meta, labels)
    console.out.print(str(path))


@app.command("sdedit")
@handle_errors
def sdedit(
    image: Image,
    model: ModelSource = DEFAULT_MODEL,
    start: Annotated[
        str, typer.Option(help="Grid points to start from, comma-separated (0 = pure noise).")
    ] = "1,3,5,7,10,20",
    prompt: Prompt = None,
    steps: Steps = 30,
    sampler: Sampler = None,
    guidance: Guidance = None,
    style: Style = None,
    seed: Seed = None,
    out: Out = None,
    hint: HintSpec = None,
    hint_is_edges: HintIsEdges = False,
    control_scale: ControlScale = 1.0,
    dtype: Dtype = None,
    offload: Offload = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """SDEdit: noise an image part-way and denoise it, optionally towards --prompt (and, for
    a ControlNet run, along --hint's edges)."""
    import torch

    from diffkit.edit.images import load_image
    from diffkit.edit.loops import sdedit as run

    pipe, settings = _open(model, device, data_dir, runs_dir, no_ema, views=False, dtype=dtype,
                           offload=offload, hints=True)  # fmt: skip
    sampler, guidance = _defaults(pipe, sampler, guidance, 1.0)
    _check_sampler(pipe, sampler, steps)
    try:
        starts = [int(s) for s in start.split(",")]
    except ValueError:
        raise UsageError(f"--start {start}: expected comma-separated integers") from None
    pipe, hints = _hinted(pipe, hint, hint_is_edges, control_scale, settings.data_dir)
    x = load_image(image, pipe.model.sample_shape, settings.data_dir)
    prompt = _prompt(pipe, prompt)
    cond = _cond(pipe, [prompt], 1, style)[0] if prompt is not None else None
    cond = _with_hint(cond, hints, 1)
    outs = []
    for k in starts:
        total = progress_total(sampler, steps - k, 1, 1)
        with _resident(pipe, offload), console.steps(f"sdedit from {k}", total) as tick:
            try:
                outs.append(run(pipe, x, k, sampler=sampler, steps=steps, cond=cond,
                                guidance=guidance, seed=seed or 0, on_step=tick))  # fmt: skip
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    samples = torch.cat(outs).clamp(-1, 1)
    meta = {"op": "sdedit", "model": model, "image": image, "starts": starts,
            "prompt": prompt, "style": style, "steps": steps, "sampler": sampler,
            "guidance": guidance, "seed": seed or 0, "hint": hint,
            "control_scale": control_scale if hints is not None else None}  # fmt: skip
    grid = torch.cat([x, samples])
    columns = ["original", *(f"start {k}" for k in starts)]
    path = _publish("sdedit", out, settings.runs_dir, grid, len(starts) + 1, samples, meta,
                    columns=columns)  # fmt: skip
    console.out.print(str(path))


@app.command("inpaint")
@handle_errors
def inpaint(
    image: Image,
    model: ModelSource = DEFAULT_MODEL,
    mask: Annotated[
        str | None,
        typer.Option(
            help="Mask image of the model's size (white: regenerate).", show_default=False
        ),
    ] = None,
    box: Annotated[
        str | None,
        typer.Option(help="Region to regenerate, x0,y0,x1,y1 in pixels.", show_default=False),
    ] = None,
    resample: Annotated[
        str | None,
        typer.Option(
            help="RePaint's jump length and resample count, J,R (DDPMs).", show_default=False
        ),
    ] = None,
    prompt: Prompt = None,
    n: Annotated[int, typer.Option("-n", "--num-images", help="Completions.", min=1)] = 4,
    steps: Steps = 50,
    sampler: Sampler = None,
    guidance: Guidance = None,
    style: Style = None,
    seed: Seed = None,
    out: Out = None,
    hint: HintSpec = None,
    hint_is_edges: HintIsEdges = False,
    control_scale: ControlScale = 1.0,
    dtype: Dtype = None,
    offload: Offload = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """Inpainting: regenerate a masked region; outside it the output equals the input. A
    ControlNet run draws the region along --hint's edges."""
    import torch

    from diffkit.edit.images import box_mask, file_mask, load_image
    from diffkit.edit.loops import inpaint as replace
    from diffkit.edit.loops import repaint
    from diffkit.edit.repaint import jump_schedule

    if (mask is None) == (box is None):
        raise UsageError("give exactly one of --mask and --box")
    pipe, settings = _open(model, device, data_dir, runs_dir, no_ema, views=False, dtype=dtype,
                           offload=offload, hints=True)  # fmt: skip
    sampler, guidance = _defaults(pipe, sampler, guidance, 1.0)
    _check_sampler(pipe, sampler, steps)
    shape = pipe.model.sample_shape
    m = file_mask(mask, shape) if mask is not None else box_mask(box, shape)  # type: ignore[arg-type]
    pipe, hints = _hinted(pipe, hint, hint_is_edges, control_scale, settings.data_dir)
    x = load_image(image, shape, settings.data_dir).expand(n, *shape)
    prompt = _prompt(pipe, prompt)
    cond = _cond(pipe, [prompt], n, style)[0] if prompt is not None else None
    cond = _with_hint(cond, hints, n)
    common = {"steps": steps, "cond": cond, "guidance": guidance, "seed": seed or 0}
    try:
        if resample is not None:
            jump, count = (int(v) for v in resample.split(","))
            moves = len(jump_schedule(steps, jump, count))
            with (
                _resident(pipe, offload),
                console.steps(f"repaint, {n} completions", moves) as tick,
            ):
                samples = repaint(pipe, x, m, jump=jump, resample=count, on_step=tick, **common)
        else:
            total = progress_total(sampler, steps, 1, 1)
            with (
                _resident(pipe, offload),
                console.steps(f"inpaint, {n} completions", total) as tick,
            ):
                samples = replace(pipe, x, m, sampler=sampler, on_step=tick, **common)
    except ValueError as exc:
        raise UsageError(f"--resample {resample}: {exc}" if resample else str(exc)) from None
    samples = samples.clamp(-1, 1)
    meta = {"op": "inpaint", "model": model, "image": image, "mask": mask, "box": box,
            "resample": resample, "prompt": prompt, "style": style, "n": n, "steps": steps,
            "sampler": "ddpm" if resample else sampler, "guidance": guidance,
            "seed": seed or 0, "hint": hint,
            "control_scale": control_scale if hints is not None else None}  # fmt: skip
    grid = torch.cat([x[:1], x[:1] * (1 - m) - m, samples])  # original, masked (black), outputs
    columns = ["original", "masked", *(f"#{i + 1}" for i in range(n))]
    path = _publish("inpaint", out, settings.runs_dir, grid, n + 2, samples, meta,
                    columns=columns)  # fmt: skip
    console.out.print(str(path))


@app.command("noise")
@handle_errors
def noise(
    image: Image,
    model: ModelSource = DEFAULT_MODEL,
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help="Noise levels: DDPM timesteps (250,500,750) or flow times in [0, 1) (noise at 0).",
        ),
    ] = "250,500,750",
    seed: Seed = None,
    out: Out = None,
    dtype: Dtype = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
) -> None:
    """The forward process q(x_t | x_0) of an image at chosen noise levels."""
    import torch

    from diffkit.edit.images import load_image
    from diffkit.edit.loops import noised
    from diffkit.models.contract import DDPMModel

    # The forward process needs only the schedule: the UNet stays on the CPU.
    pipe, settings = _open(model, device, data_dir, runs_dir, False, views=False, dtype=dtype,
                           offload=_foreign(model))  # fmt: skip
    points = _levels(at, pipe.model.max_steps() if isinstance(pipe.model, DDPMModel) else None)
    x = load_image(image, pipe.model.sample_shape, settings.data_dir)
    g = torch.Generator().manual_seed(seed or 0)
    samples = torch.cat([noised(pipe, x, p, torch.randn(x.shape, generator=g)) for p in points])
    meta = {"op": "noise", "model": model, "image": image, "at": points, "seed": seed or 0}
    grid = torch.cat([x, samples.clamp(-1, 1)])
    columns = ["original", *(f"t={p:g}" for p in points)]
    console.out.print(str(_publish("noise", out, settings.runs_dir, grid, len(points) + 1,
                                   samples, meta, columns=columns)))  # fmt: skip


def _foreign(model: str) -> bool:
    from diffkit.external import is_foreign

    return is_foreign(model)


def _levels(spec: str, num_steps: int | None) -> list[float]:
    """Noise levels: integers below T for a DDPM, times in [0, 1) for a flow."""
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        raise UsageError(f"--at {spec}: expected comma-separated numbers") from None
    if num_steps is not None and not all(v.is_integer() and 0 <= v < num_steps for v in values):
        raise UsageError(f"--at {spec}: a DDPM's levels are timesteps 0..{num_steps - 1}")
    if num_steps is None and not all(0 <= v < 1 for v in values):
        raise UsageError(f"--at {spec}: a flow's levels are times in [0, 1)")
    return [int(v) if num_steps is not None else v for v in values]


@app.command("denoise")
@handle_errors
def denoise(
    image: Image,
    model: ModelSource = DEFAULT_MODEL,
    start: Annotated[
        int, typer.Option(help="Grid point of the noisy image (0 = pure noise).")
    ] = 10,
    prompt: Prompt = None,
    steps: Steps = 30,
    sampler: Sampler = None,
    guidance: Guidance = None,
    seed: Seed = None,
    out: Out = None,
    dtype: Dtype = None,
    offload: Offload = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """Noise an image to one grid point, then compare: the best Gaussian blur, the
    one-step x0 estimate and iterative denoising over the rest of the grid."""
    import torch

    from diffkit.edit.images import load_image
    from diffkit.edit.loops import noised
    from diffkit.edit.ops import best_blur, one_step_x0

    pipe, settings = _open(model, device, data_dir, runs_dir, no_ema, views=False, dtype=dtype,
                           offload=offload)  # fmt: skip
    sampler, guidance = _defaults(pipe, sampler, guidance, 1.0)
    _check_sampler(pipe, sampler, steps)
    if not 0 <= start < steps:
        raise UsageError(f"--start must be between 0 and {steps - 1} for {steps} steps")
    x = load_image(image, pipe.model.sample_shape, settings.data_dir)
    prompt = _prompt(pipe, prompt)
    cond = _cond(pipe, [prompt], 1)[0] if prompt is not None else None
    point = pipe.grid(steps)[start]
    g = torch.Generator().manual_seed(seed or 0)
    noisy = noised(pipe, x, point, torch.randn(x.shape, generator=g))
    blurred, sigma = best_blur(noisy, x)
    gen = torch.Generator(pipe.device).manual_seed((seed or 0) + 1)
    total = progress_total(sampler, steps - start, 1, 1)
    with _resident(pipe, offload):
        one = one_step_x0(pipe, noisy, float(point), cond, guidance)
        with console.steps(f"denoise from point {start}", total) as tick:
            many, _ = pipe.generate(noisy, sampler, steps, cond=cond, guidance=guidance,
                                    generator=gen, start=start, on_step=tick)  # fmt: skip
    methods = {"blur": blurred, "one_step": one, "iterative": many.float().cpu()}
    mse = {k: float((v.clamp(-1, 1) - x).pow(2).mean()) for k, v in methods.items()}
    samples = torch.cat([noisy, *methods.values()]).clamp(-1, 1)
    meta = {"op": "denoise", "model": model, "image": image, "start": start,
            "level": float(point), "prompt": prompt, "steps": steps, "sampler": sampler,
            "guidance": guidance, "blur_sigma": sigma, "mse": mse,
            "seed": seed or 0}  # fmt: skip
    console.info("MSE to the original: " + ", ".join(f"{k} {v:.4f}" for k, v in mse.items()))
    grid = torch.cat([x, samples])  # original | noisy | blur | one step | iterative
    columns = ["original", "noisy", f"blur {sigma:g}", "one step", "iterative"]
    path = _publish("denoise", out, settings.runs_dir, grid, 5, samples, meta, columns=columns)
    console.out.print(str(path))


@app.command("sample")
@handle_errors
def sample(
    prompts: Annotated[list[str], typer.Argument(help="Prompts to draw.", show_default=False)],
    model: ModelSource = DEFAULT_MODEL,
    n: Annotated[int, typer.Option("-n", "--num-images", help="Images per prompt.", min=1)] = 4,
    steps: Steps = 50,
    sampler: Sampler = None,
    guidance: Guidance = None,
    style: Style = None,
    upscale: Upscale = False,
    upscaler: Upscaler = DEFAULT_UPSCALER,
    seed: Seed = None,
    out: Out = None,
    dtype: Dtype = None,
    offload: Offload = False,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """Prompts -> images with classifier-free guidance: one row per prompt."""
    import torch

    pipe, settings = _open(model, device, data_dir, runs_dir, no_ema, views=False, dtype=dtype,
                           offload=offload)  # fmt: skip
    sampler, guidance = _defaults(pipe, sampler, guidance, 3.0)
    _check_sampler(pipe, sampler, steps)
    conds = _cond(pipe, prompts, n, style)
    cond = conds[0]
    for c in conds[1:]:
        cond = cond.cat(c)  # (P * n) rows, prompt by prompt
    total = progress_total(sampler, steps, 1, 1)
    with _resident(pipe, offload), console.steps(f"sample, {len(prompts)} x {n}", total) as tick:
        result = pipe.sample(len(prompts) * n, cond=cond, guidance=guidance, sampler=sampler,
                             steps=steps, seed=seed or 0, on_step=tick)  # fmt: skip
    images = result.images.clamp(-1, 1)
    if upscale:
        ups = [_upscale(pipe, images[i * n : (i + 1) * n], [p], style,
                        _single,
                        upscaler=upscaler, seed=(seed or 0) + i, offload=offload, dtype=dtype,
                        settings=settings) for i, p in enumerate(prompts)]  # fmt: skip
        images = torch.cat(ups)
    meta = {"op": "sample", "model": model, "prompts": prompts, "style": style, "n": n,
            "steps": steps, "sampler": sampler, "guidance": guidance,
            "upscaler": upscaler if upscale else None, "seed": seed or 0,
            "seconds_per_image": result.seconds_per_image}  # fmt: skip
    path = _publish("sample", out, settings.runs_dir, images, n, images, meta, list(prompts))
    console.out.print(str(path))


@app.command("embed")
@handle_errors
def embed(
    prompts: Annotated[list[str], typer.Argument(help="Prompts to embed.", show_default=False)],
    model: ModelSource = DEFAULT_MODEL,
    style: Style = None,
    dtype: Dtype = None,
    runs_dir: RunsDir = None,
    device: Device = None,
) -> None:
    """Embed prompts with a text model's encoder into the embedding cache, so that later
    edits need no encoder (prompts are stored as given, with --style if set; anagrams and
    hybrids prefix the default style themselves)."""
    if not _foreign(model):
        raise UsageError(f"--model {model} is not a text model; its prompts are classes")
    pipe, _ = _open(model, device, None, runs_dir, False, views=False, dtype=dtype,
                    offload=True)  # the UNet is not needed; it stays on the CPU  # fmt: skip
    if not _text(pipe):
        raise UsageError(f"--model {model} is not a text model; it takes no prompts")
    texts = [_styled(p, style) for p in prompts]
    encoder = pipe.model.prompts
    fresh = [t for t in texts if not encoder.cached(t)]
    encoder.embed(texts)
    for t in texts:
        console.info(f"{'embedded' if t in fresh else 'cached'}: {t!r}")
    console.out.print(str(encoder.dir))
