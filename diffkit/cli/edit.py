"""`diffkit edit`: image editing with a trained diffusion model (issue 15, first part:
diffkit's own pixel-space models and diffusers DDPM folders)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffkit.cli import console
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.options import DataDir, Device, Guidance, NoEma, RunsDir, Seed, machine_settings
from diffkit.cli.shared import parse_classes, progress_total

app = typer.Typer(
    help="Edit images with a diffusion model: visual anagrams, hybrids, SDEdit, inpainting.",
    no_args_is_help=True,
)

Source = Annotated[
    Path, typer.Argument(help="Run folder, checkpoint or diffusers folder.", show_default=False)
]
Steps = Annotated[int, typer.Option(help="Sampler steps.", min=1)]
Sampler = Annotated[str, typer.Option(help="Sampler (ddim, ddpm, dpm++2m or an ODE solver).")]
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
    typer.Option(help="A class of the model (index or name) to steer towards.", show_default=False),
]


def _open(source: Path, device: str | None, data_dir, runs_dir, no_ema: bool, *, views: bool):
    from diffkit.methods.load import load_pipeline
    from diffkit.training.hardware import resolve_device

    settings = machine_settings(data_dir, runs_dir, device)
    pipe = load_pipeline(source, resolve_device(settings.device), use_ema=not no_ema)
    if pipe.model.codec is not None:
        why = ("views and filters act on pixels, and a VAE is not equivariant to flips"
               if views else "editing latent models is not supported yet")  # fmt: skip
        raise UsageError(f"{source} is a latent model: {why}")
    return pipe, settings


def _cond(pipe, prompts: list[str], n: int):
    """Each prompt as a class condition of ``n`` rows."""
    import torch

    from diffkit.models.conditioning import Cond

    if pipe.num_classes is None:
        raise UsageError("this model is unconditional; it takes no prompt")
    dataset = pipe.config.data.dataset if pipe.config is not None else "this model"
    out = []
    for p in prompts:
        picked = parse_classes([p], dataset, pipe.num_classes)
        if len(picked) != 1:
            raise UsageError(f"prompt {p!r} names {len(picked)} classes; give one")
        out.append(Cond(labels=torch.full((n,), picked[0], dtype=torch.long)))
    return out


def _check_sampler(pipe, sampler: str, steps: int) -> None:
    try:
        pipe.check(sampler, steps)
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
    """grid.png, samples.safetensors and edit.json, written beside and moved in whole."""
    import shutil
    from datetime import datetime

    from safetensors.torch import save_file

    from diffkit.cli.shared import free_path
    from diffkit.runs.layout import write_json
    from diffkit.runs.plots import save_grid

    folder = out or free_path(runs_dir / "edit" / f"{datetime.now():%Y%m%d-%H%M%S}-{op}")
    if folder.exists():
        raise UsageError(f"--out {folder} already exists")
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_grid(grid, tmp / "grid.png", nrow=nrow, row_labels=labels, col_labels=columns)
    save_file({"samples": samples.contiguous()}, str(tmp / "samples.safetensors"))
    write_json(tmp / "edit.json", meta)
    tmp.rename(folder)
    return folder


def _integrate(pipe, net, sampler: str, steps: int, n: int, seed: int, label: str):
    """``n`` images from seeded noise under a combined network, (n, C, H, W) in [-1, 1]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, *pipe.model.sample_shape, generator=g).to(pipe.device)
    gen = torch.Generator(pipe.device).manual_seed(seed + 1)
    opts = pipe.options(sampler, {})
    with console.steps(label, progress_total(sampler, steps, 1, 1)) as advance:
        x, _ = pipe.integrate(net, noise, sampler, steps, opts, gen, advance)
    return x.float().cpu().clamp(-1, 1)


@app.command("anagram")
@handle_errors
def anagram(
    source: Source,
    prompts: Annotated[list[str], typer.Argument(help="One class per view.", show_default=False)],
    views: Annotated[
        str,
        typer.Option(
            help="Comma-separated views, one per prompt (identity, flip, mirror, "
            "rot90, rot180, rot270, transpose, negate)."
        ),
    ] = "identity,flip",
    n: Annotated[int, typer.Option("-n", help="Images.", min=1)] = 4,
    steps: Steps = 50,
    sampler: Sampler = "ddim",
    guidance: Guidance = 3.0,
    seed: Seed = None,
    out: Out = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """A visual anagram: one image that reads as each prompt under its view."""
    import torch

    from diffkit.edit.compose import anagram as combine
    from diffkit.edit.compose import with_guidance
    from diffkit.edit.views import check_orthogonal, view

    pipe, settings = _open(source, device, data_dir, runs_dir, no_ema, views=True)
    names = [v.strip() for v in views.split(",")]
    if len(names) != len(prompts):
        raise UsageError(f"--views gives {len(names)} views for {len(prompts)} prompts")
    try:
        chosen = [view(v) for v in names]
        for v in chosen:
            check_orthogonal(v, pipe.model.sample_shape)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--views: {exc}") from None
    _check_sampler(pipe, sampler, steps)
    conds = [c.to(pipe.device) for c in _cond(pipe, prompts, n)]
    raw = with_guidance(pipe.model.raw, pipe.model.unconditional, guidance)
    net = combine(raw, conds, chosen)
    seed = seed or 0
    images = _integrate(pipe, net, sampler, steps, n, seed, f"anagram, {n} images")
    grid = torch.cat([v.apply(images) for v in chosen])  # row k: the images under view k
    meta = {"op": "anagram", "source": str(source), "prompts": prompts, "views": names,
            "n": n, "steps": steps, "sampler": sampler, "guidance": guidance,
            "seed": seed}  # fmt: skip
    labels = [f"{v}: {p}" for v, p in zip(names, prompts, strict=True)]
    path = _publish("anagram", out, settings.runs_dir, grid, n, images, meta, labels)
    console.out.print(str(path))


@app.command("hybrid")
@handle_errors
def hybrid(
    source: Source,
    low: Annotated[str, typer.Argument(help="Class seen from afar (low frequencies).")],
    high: Annotated[str, typer.Argument(help="Class seen up close (high frequencies).")],
    sigma: Annotated[float, typer.Option(help="Gaussian blur sigma, pixels.", min=0.1)] = 2.0,
    kernel: Annotated[int, typer.Option(help="Blur kernel size (odd).", min=1)] = 33,
    n: Annotated[int, typer.Option("-n", help="Images.", min=1)] = 4,
    steps: Steps = 50,
    sampler: Sampler = "ddim",
    guidance: Guidance = 3.0,
    seed: Seed = None,
    out: Out = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """A hybrid image: the low frequencies of one prompt, the high ones of another."""
    import torch

    from diffkit.edit.compose import factorized, with_guidance
    from diffkit.edit.filters import highpass, lowpass

    if kernel % 2 == 0:
        raise UsageError("--kernel must be odd")
    pipe, settings = _open(source, device, data_dir, runs_dir, no_ema, views=True)
    _check_sampler(pipe, sampler, steps)
    conds = [c.to(pipe.device) for c in _cond(pipe, [low, high], n)]
    lo, hi = lowpass(sigma, kernel), highpass(sigma, kernel)
    net = factorized(with_guidance(pipe.model.raw, pipe.model.unconditional, guidance),
                     conds, [lo, hi])  # fmt: skip
    seed = seed or 0
    images = _integrate(pipe, net, sampler, steps, n, seed, f"hybrid, {n} images")
    grid = torch.cat([images, lo(images)])  # row 2: what the eye sees from afar
    meta = {"op": "hybrid", "source": str(source), "low": low, "high": high, "sigma": sigma,
            "kernel": kernel, "n": n, "steps": steps, "sampler": sampler,
            "guidance": guidance, "seed": seed}  # fmt: skip
    labels = [f"{high} (near)", f"{low} (far)"]
    path = _publish("hybrid", out, settings.runs_dir, grid, n, images, meta, labels)
    console.out.print(str(path))


@app.command("sdedit")
@handle_errors
def sdedit(
    source: Source,
    image: Image,
    start: Annotated[
        str, typer.Option(help="Grid points to start from, comma-separated (0 = pure noise).")
    ] = "1,3,5,7,10,20",
    prompt: Prompt = None,
    steps: Steps = 30,
    sampler: Sampler = "ddim",
    guidance: Guidance = 1.0,
    seed: Seed = None,
    out: Out = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """SDEdit: noise an image part-way and denoise it, optionally towards --prompt."""
    import torch

    from diffkit.edit.images import load_image
    from diffkit.edit.loops import sdedit as run

    pipe, settings = _open(source, device, data_dir, runs_dir, no_ema, views=False)
    _check_sampler(pipe, sampler, steps)
    try:
        starts = [int(s) for s in start.split(",")]
    except ValueError:
        raise UsageError(f"--start {start}: expected comma-separated integers") from None
    x = load_image(image, pipe.model.sample_shape, settings.data_dir)
    cond = _cond(pipe, [prompt], 1)[0] if prompt is not None else None
    outs = []
    for k in starts:
        with console.steps(f"sdedit from {k}", progress_total(sampler, steps - k, 1, 1)) as tick:
            try:
                outs.append(run(pipe, x, k, sampler=sampler, steps=steps, cond=cond,
                                guidance=guidance, seed=seed or 0, on_step=tick))  # fmt: skip
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    samples = torch.cat(outs).clamp(-1, 1)
    meta = {"op": "sdedit", "source": str(source), "image": image, "starts": starts,
            "prompt": prompt, "steps": steps, "sampler": sampler, "guidance": guidance,
            "seed": seed or 0}  # fmt: skip
    grid = torch.cat([x, samples])
    columns = ["original", *(f"start {k}" for k in starts)]
    path = _publish("sdedit", out, settings.runs_dir, grid, len(starts) + 1, samples, meta,
                    columns=columns)  # fmt: skip
    console.out.print(str(path))


@app.command("inpaint")
@handle_errors
def inpaint(
    source: Source,
    image: Image,
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
    n: Annotated[int, typer.Option("-n", help="Completions.", min=1)] = 4,
    steps: Steps = 50,
    sampler: Sampler = "ddim",
    guidance: Guidance = 1.0,
    seed: Seed = None,
    out: Out = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """Inpainting: regenerate a masked region; outside it the output equals the input."""
    import torch

    from diffkit.edit.images import box_mask, file_mask, load_image
    from diffkit.edit.loops import inpaint as replace
    from diffkit.edit.loops import repaint
    from diffkit.edit.repaint import jump_schedule

    if (mask is None) == (box is None):
        raise UsageError("give exactly one of --mask and --box")
    pipe, settings = _open(source, device, data_dir, runs_dir, no_ema, views=False)
    _check_sampler(pipe, sampler, steps)
    shape = pipe.model.sample_shape
    m = file_mask(mask, shape) if mask is not None else box_mask(box, shape)  # type: ignore[arg-type]
    x = load_image(image, shape, settings.data_dir).expand(n, *shape)
    cond = _cond(pipe, [prompt], n)[0] if prompt is not None else None
    common = {"steps": steps, "cond": cond, "guidance": guidance, "seed": seed or 0}
    try:
        if resample is not None:
            jump, count = (int(v) for v in resample.split(","))
            moves = len(jump_schedule(steps, jump, count))
            with console.steps(f"repaint, {n} completions", moves) as tick:
                samples = repaint(pipe, x, m, jump=jump, resample=count, on_step=tick, **common)
        else:
            total = progress_total(sampler, steps, 1, 1)
            with console.steps(f"inpaint, {n} completions", total) as tick:
                samples = replace(pipe, x, m, sampler=sampler, on_step=tick, **common)
    except ValueError as exc:
        raise UsageError(f"--resample {resample}: {exc}" if resample else str(exc)) from None
    samples = samples.clamp(-1, 1)
    meta = {"op": "inpaint", "source": str(source), "image": image, "mask": mask, "box": box,
            "resample": resample, "prompt": prompt, "n": n, "steps": steps,
            "sampler": "ddpm" if resample else sampler, "guidance": guidance,
            "seed": seed or 0}  # fmt: skip
    grid = torch.cat([x[:1], x[:1] * (1 - m) - m, samples])  # original, masked (black), outputs
    columns = ["original", "masked", *(f"#{i + 1}" for i in range(n))]
    path = _publish("inpaint", out, settings.runs_dir, grid, n + 2, samples, meta,
                    columns=columns)  # fmt: skip
    console.out.print(str(path))


@app.command("noise")
@handle_errors
def noise(
    source: Source,
    image: Image,
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help="Noise levels: DDPM timesteps (250,500,750) or flow times in [0, 1] (noise at 0).",
        ),
    ] = "250,500,750",
    seed: Seed = None,
    out: Out = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
) -> None:
    """The forward process q(x_t | x_0) of an image at chosen noise levels."""
    import torch

    from diffkit.edit.images import load_image
    from diffkit.edit.loops import noised
    from diffkit.models.contract import DDPMModel

    pipe, settings = _open(source, device, data_dir, runs_dir, False, views=False)
    points = _levels(at, pipe.model.max_steps() if isinstance(pipe.model, DDPMModel) else None)
    x = load_image(image, pipe.model.sample_shape, settings.data_dir)
    g = torch.Generator().manual_seed(seed or 0)
    samples = torch.cat([noised(pipe, x, p, torch.randn(x.shape, generator=g)) for p in points])
    meta = {"op": "noise", "source": str(source), "image": image, "at": points, "seed": seed or 0}
    grid = torch.cat([x, samples.clamp(-1, 1)])
    columns = ["original", *(f"t={p:g}" for p in points)]
    console.out.print(str(_publish("noise", out, settings.runs_dir, grid, len(points) + 1,
                                   samples, meta, columns=columns)))  # fmt: skip


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
    source: Source,
    image: Image,
    start: Annotated[
        int, typer.Option(help="Grid point of the noisy image (0 = pure noise).")
    ] = 10,
    steps: Steps = 30,
    sampler: Sampler = "ddim",
    seed: Seed = None,
    out: Out = None,
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

    pipe, settings = _open(source, device, data_dir, runs_dir, no_ema, views=False)
    _check_sampler(pipe, sampler, steps)
    if not 0 <= start < steps:
        raise UsageError(f"--start must be between 0 and {steps - 1} for {steps} steps")
    x = load_image(image, pipe.model.sample_shape, settings.data_dir)
    point = pipe.grid(steps)[start]
    g = torch.Generator().manual_seed(seed or 0)
    noisy = noised(pipe, x, point, torch.randn(x.shape, generator=g))
    blurred, sigma = best_blur(noisy, x)
    one = one_step_x0(pipe, noisy, float(point))
    gen = torch.Generator(pipe.device).manual_seed((seed or 0) + 1)
    total = progress_total(sampler, steps - start, 1, 1)
    with console.steps(f"denoise from point {start}", total) as tick:
        many, _ = pipe.generate(noisy, sampler, steps, generator=gen, start=start, on_step=tick)
    methods = {"blur": blurred, "one_step": one, "iterative": many.float().cpu()}
    mse = {k: float((v.clamp(-1, 1) - x).pow(2).mean()) for k, v in methods.items()}
    samples = torch.cat([noisy, *methods.values()]).clamp(-1, 1)
    meta = {"op": "denoise", "source": str(source), "image": image, "start": start,
            "level": float(point), "steps": steps, "sampler": sampler, "blur_sigma": sigma,
            "mse": mse, "seed": seed or 0}  # fmt: skip
    console.info("MSE to the original: " + ", ".join(f"{k} {v:.4f}" for k, v in mse.items()))
    grid = torch.cat([x, samples])  # original | noisy | blur | one step | iterative
    columns = ["original", "noisy", f"blur {sigma:g}", "one step", "iterative"]
    path = _publish("denoise", out, settings.runs_dir, grid, 5, samples, meta, columns=columns)
    console.out.print(str(path))


@app.command("sample")
@handle_errors
def sample(
    source: Source,
    prompts: Annotated[list[str], typer.Argument(help="Classes to draw.", show_default=False)],
    n: Annotated[int, typer.Option("-n", help="Images per prompt.", min=1)] = 4,
    steps: Steps = 50,
    sampler: Sampler = "ddim",
    guidance: Guidance = 3.0,
    seed: Seed = None,
    out: Out = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    no_ema: NoEma = False,
) -> None:
    """Prompts -> images with classifier-free guidance: one row per prompt."""
    import torch

    from diffkit.models.conditioning import Cond

    pipe, settings = _open(source, device, data_dir, runs_dir, no_ema, views=False)
    _check_sampler(pipe, sampler, steps)
    labels = torch.cat([c.labels for c in _cond(pipe, prompts, n)])  # type: ignore[misc]
    total = progress_total(sampler, steps, 1, 1)
    with console.steps(f"sample, {len(prompts)} prompts x {n}", total) as tick:
        result = pipe.sample(labels.numel(), cond=Cond(labels=labels), guidance=guidance,
                             sampler=sampler, steps=steps, seed=seed or 0,
                             on_step=tick)  # fmt: skip
    images = result.images.clamp(-1, 1)
    meta = {"op": "sample", "source": str(source), "prompts": prompts, "n": n,
            "steps": steps, "sampler": sampler, "guidance": guidance, "seed": seed or 0,
            "seconds_per_image": result.seconds_per_image}  # fmt: skip
    path = _publish("sample", out, settings.runs_dir, images, n, images, meta, list(prompts))
    console.out.print(str(path))
