"""`diffkit edit`: image editing with a diffusion model, on diffkit's own class-conditional
runs (a prompt is a class) and on DeepFloyd IF (a prompt is text). Each command builds a
request of :mod:`diffkit.app.edit.requests` and prints the folder its op writes."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from diffkit.app.edit.requests import (
    ANCESTRAL,
    DEFAULT_MODEL,
    DEFAULT_STYLE,
    DEFAULT_TEXT_PROMPT,
    DEFAULT_UPSCALER,
)
from diffkit.cli import console
from diffkit.cli.choices import ddpm_samplers, family_defaults
from diffkit.cli.errors import handle_errors
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
        help=f"Sampler ({', '.join(ddpm_samplers())} or an ODE solver; default "
        f"{ANCESTRAL} on text models, as IF's pipeline, {family_defaults('ddpm')} "
        "otherwise).",
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


Images = Annotated[int, typer.Option("-n", "--num-images", help="Images.", min=1)]
Kernel = Annotated[int, typer.Option(help="Blur kernel size (odd).", min=1)]


def grouped(command):
    """Let ``command`` take option groups: a parameter annotated with a dataclass of
    options (a group; groups nest) is declared to Typer as the group's options, in its
    place, and reaches the command as one instance of it. The options several commands
    share are declared once, and each body receives them as one typed value."""
    signature = inspect.signature(command, eval_str=True)
    groups = {p.name: p.annotation for p in signature.parameters.values()
              if dataclasses.is_dataclass(p.annotation)}  # fmt: skip

    def flat(name: str, annotation: Any, default: Any) -> list[inspect.Parameter]:
        if not dataclasses.is_dataclass(annotation):
            return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                      annotation=annotation)]  # fmt: skip
        hints = typing.get_type_hints(annotation, include_extras=True)
        return [q for f in dataclasses.fields(annotation)
                for q in flat(f.name, hints[f.name], f.default)]  # fmt: skip

    def build(cls: Any, values: dict[str, Any]) -> Any:
        hints = typing.get_type_hints(cls, include_extras=True)
        return cls(**{f.name: build(hints[f.name], values) if f.name not in values
                      else values.pop(f.name) for f in dataclasses.fields(cls)})  # fmt: skip

    @functools.wraps(command)
    def run(**values: Any) -> Any:
        built = {name: build(cls, values) for name, cls in groups.items()}
        return command(**values, **built)

    params = [q for p in signature.parameters.values()
              for q in flat(p.name, p.annotation, p.default)]  # fmt: skip
    run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


@dataclasses.dataclass(frozen=True)
class Machine:
    """Where the model runs and how it is held: the options every sampling edit ends with."""

    dtype: Dtype = None
    offload: Offload = False
    data_dir: DataDir = None
    runs_dir: RunsDir = None
    device: Device = None
    no_ema: NoEma = False

    def settings(self):
        return machine_settings(self.data_dir, self.runs_dir, self.device)

    def held(self) -> dict[str, Any]:
        """The request fields of these options."""
        return {"dtype": self.dtype, "offload": self.offload, "no_ema": self.no_ema}


@dataclasses.dataclass(frozen=True)
class Drawing:
    """The options after --sampler of the edits that draw from prompts alone (anagram,
    hybrid, sample)."""

    guidance: Guidance = None
    style: Style = None
    upscale: Upscale = False
    upscaler: Upscaler = DEFAULT_UPSCALER
    seed: Seed = None
    out: Out = None
    machine: Machine = Machine()

    def request(self) -> dict[str, Any]:
        return {"guidance": self.guidance, "style": self.style, "upscale": self.upscale,
                "upscaler": self.upscaler, "seed": self.seed or 0, "out": self.out,
                **self.machine.held()}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Hinting:
    """The options after --sampler of the edits of one image that a ControlNet steers
    (sdedit, inpaint)."""

    guidance: Guidance = None
    style: Style = None
    seed: Seed = None
    out: Out = None
    hint: HintSpec = None
    hint_is_edges: HintIsEdges = False
    control_scale: ControlScale = 1.0
    machine: Machine = Machine()

    def request(self) -> dict[str, Any]:
        return {"guidance": self.guidance, "style": self.style, "seed": self.seed or 0,
                "out": self.out, "hint": self.hint, "hint_is_edges": self.hint_is_edges,
                "control_scale": self.control_scale, **self.machine.held()}  # fmt: skip


def _command(name: str):
    """Declare an edit command: its option groups flattened (:func:`grouped`), its
    refusals turned into one ``error:`` line."""

    def declare(command):
        return app.command(name)(handle_errors(grouped(command)))

    return declare


def _done(result) -> None:
    """Print the folder an op wrote: the command's one line on stdout."""
    console.out.print(str(result.folder))


@_command("anagram")
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
    n: Images = 4,
    steps: Steps = 50,
    sampler: Sampler = None,
    drawing: Drawing = Drawing(),
) -> None:
    """A visual anagram: one image that reads as each prompt under its view."""
    from diffkit.app.edit import compose, requests

    req = requests.AnagramRequest(prompts=tuple(prompts), views=views, model=model, n=n,
                                  steps=steps, sampler=sampler, **drawing.request())  # fmt: skip
    _done(compose.anagram(req, drawing.machine.settings(), console))


@_command("hybrid")
def hybrid(
    low: Annotated[str, typer.Argument(help="Prompt seen from afar (low frequencies).")],
    high: Annotated[str, typer.Argument(help="Prompt seen up close (high frequencies).")],
    model: ModelSource = DEFAULT_MODEL,
    sigma: Annotated[float, typer.Option(help="Gaussian blur sigma, pixels.", min=0.1)] = 2.0,
    kernel: Kernel = 33,
    n: Images = 4,
    steps: Steps = 50,
    sampler: Sampler = None,
    drawing: Drawing = Drawing(),
) -> None:
    """A hybrid image: the low frequencies of one prompt, the high ones of another."""
    from diffkit.app.edit import compose, requests

    req = requests.HybridRequest(low=low, high=high, model=model, sigma=sigma, kernel=kernel,
                                 n=n, steps=steps, sampler=sampler,
                                 **drawing.request())  # fmt: skip
    _done(compose.hybrid(req, drawing.machine.settings(), console))


@_command("factorize")
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
    kernel: Kernel = 33,
    model: ModelSource = DEFAULT_MODEL,
    n: Images = 4,
    steps: Steps = 50,
    sampler: Sampler = None,
    guidance: Guidance = None,
    style: Style = None,
    seed: Seed = None,
    out: Out = None,
    machine: Machine = Machine(),
) -> None:
    """Factorized diffusion: each prompt controls one part of a split of the image into
    parts that sum to it (frequency bands, or grayscale and colour)."""
    from diffkit.app.edit import compose, requests

    req = requests.FactorizeRequest(prompts=tuple(prompts), split=split, sigmas=sigmas,
                                    kernel=kernel, model=model, n=n, steps=steps,
                                    sampler=sampler, guidance=guidance, style=style,
                                    seed=seed or 0, out=out, **machine.held())  # fmt: skip
    _done(compose.factorize(req, machine.settings(), console))


@_command("sdedit")
def sdedit(
    image: Image,
    model: ModelSource = DEFAULT_MODEL,
    start: Annotated[
        str, typer.Option(help="Grid points to start from, comma-separated (0 = pure noise).")
    ] = "1,3,5,7,10,20",
    prompt: Prompt = None,
    steps: Steps = 30,
    sampler: Sampler = None,
    hinting: Hinting = Hinting(),
) -> None:
    """SDEdit: noise an image part-way and denoise it, optionally towards --prompt (and, for
    a ControlNet run, along --hint's edges)."""
    from diffkit.app.edit import images, requests

    req = requests.SdeditRequest(image=image, model=model, start=start, prompt=prompt,
                                 steps=steps, sampler=sampler, **hinting.request())  # fmt: skip
    _done(images.sdedit(req, hinting.machine.settings(), console))


@_command("inpaint")
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
    hinting: Hinting = Hinting(),
) -> None:
    """Inpainting: regenerate a masked region; outside it the output equals the input. A
    ControlNet run draws the region along --hint's edges."""
    from diffkit.app.edit import images, requests

    req = requests.InpaintRequest(image=image, model=model, mask=mask, box=box,
                                  resample=resample, prompt=prompt, n=n, steps=steps,
                                  sampler=sampler, **hinting.request())  # fmt: skip
    _done(images.inpaint(req, hinting.machine.settings(), console))


@_command("noise")
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
    from diffkit.app.edit import images, requests

    req = requests.NoiseRequest(image=image, model=model, at=at, seed=seed or 0, out=out,
                                dtype=dtype)  # fmt: skip
    _done(images.noise(req, machine_settings(data_dir, runs_dir, device), console))


@_command("denoise")
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
    machine: Machine = Machine(),
) -> None:
    """Noise an image to one grid point, then compare: the best Gaussian blur, the
    one-step x0 estimate and iterative denoising over the rest of the grid."""
    from diffkit.app.edit import images, requests

    req = requests.DenoiseRequest(image=image, model=model, start=start, prompt=prompt,
                                  steps=steps, sampler=sampler, guidance=guidance,
                                  seed=seed or 0, out=out, **machine.held())  # fmt: skip
    _done(images.denoise(req, machine.settings(), console))


@_command("sample")
def sample(
    prompts: Annotated[list[str], typer.Argument(help="Prompts to draw.", show_default=False)],
    model: ModelSource = DEFAULT_MODEL,
    n: Annotated[int, typer.Option("-n", "--num-images", help="Images per prompt.", min=1)] = 4,
    steps: Steps = 50,
    sampler: Sampler = None,
    drawing: Drawing = Drawing(),
) -> None:
    """Prompts -> images with classifier-free guidance: one row per prompt."""
    from diffkit.app.edit import prompting, requests

    req = requests.SampleRequest(prompts=tuple(prompts), model=model, n=n, steps=steps,
                                 sampler=sampler, **drawing.request())  # fmt: skip
    _done(prompting.sample(req, drawing.machine.settings(), console))


@_command("embed")
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
    from diffkit.app.edit import prompting, requests

    req = requests.EmbedRequest(prompts=tuple(prompts), model=model, style=style,
                                dtype=dtype)  # fmt: skip
    result = prompting.embed(req, machine_settings(None, runs_dir, device))
    for text, fresh in result.texts:
        console.info(f"{'embedded' if fresh else 'cached'}: {text!r}")
    console.out.print(str(result.folder))
