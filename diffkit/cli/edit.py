"""`diffkit edit`: image editing with a diffusion model, on diffkit's own class-conditional
runs (a prompt is a class) and on DeepFloyd IF (a prompt is text). Each command builds a
request of :mod:`diffkit.app.edit.requests` and prints the folder its op writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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
from diffkit.cli.flags import (
    CONTROL_SCALE,
    DATA_DIR,
    DEVICE,
    GUIDANCE,
    HINT,
    HINT_IS_EDGES,
    MODEL,
    NO_EMA,
    OUTPUT,
    REQUIRED,
    RUNS_DIR,
    SAMPLER,
    SEED,
    Flag,
    argument,
    flag,
    option,
    takes,
)
from diffkit.cli.options import in_range, settings_of
from diffkit.cli.shared import picked

app = typer.Typer(
    help="Edit images with a diffusion model: visual anagrams, hybrids, SDEdit, inpainting.",
    no_args_is_help=True,
)

MODEL_SOURCE = flag("model", str, DEFAULT_MODEL, "A diffkit run or checkpoint, or a diffusers "
                    "folder or hf:ORG/NAME (DeepFloyd IF).", MODEL, "--model", "-m")  # fmt: skip
STEPS = flag("steps", int, 50, "Sampler steps.", SAMPLER, min=1)
EDIT_SAMPLER = option(
    "sampler", str | None,
    f"Sampler ({', '.join(ddpm_samplers())} or an ODE solver; default {ANCESTRAL} on text "
    f"models, as IF's pipeline, else {family_defaults()}).",
    SAMPLER,
)  # fmt: skip
STEERED_SAMPLER = EDIT_SAMPLER.but(
    f"Sampler ({', '.join(ddpm_samplers())} or a fixed-step ODE solver: this op starts or "
    "steers it part-way, which an adaptive one cannot; default "
    f"{ANCESTRAL} on text models, as IF's pipeline, else {family_defaults()})."
)  # fmt: skip
EDIT_GUIDANCE = option(
    "guidance", float | None,
    "Classifier-free guidance scale w (1 = plain conditional; default 7 on text models, the "
    "op's own on class models).",
    GUIDANCE, callback=in_range(0.0),
)  # fmt: skip
OUT = option("out", Path | None, "Output folder (default RUNS_DIR/edit/<stamp>-<op>).", OUTPUT)
IMAGE = option("image", str, "An image file, or a dataset item DATASET:SPLIT:INDEX "
               "(mnist:test:0).", None).but(default=REQUIRED)  # fmt: skip
PROMPT = option("prompt", str | None, "What to steer towards: a class (index or name) or, on "
                f'text models, text (default "{DEFAULT_TEXT_PROMPT}" there).', None)  # fmt: skip
STYLE = option("style", str | None, "Text models: a prefix for every prompt (anagram and "
               f'hybrid default to "{DEFAULT_STYLE}"; "" for none).', GUIDANCE)  # fmt: skip
DTYPE = option("dtype", Literal["fp32", "fp16", "bf16"] | None,
               "diffusers models: the UNet's precision (default fp32).", MODEL)  # fmt: skip
IMAGES = flag("n", int, 4, "Images.", None, "-n", "--num-images", min=1)
KERNEL = flag("kernel", int, 33, "Blur kernel size (odd).", None, min=1)

HELD = (
    DTYPE,
    flag("offload", bool, False, "diffusers models: each network on the device only while it "
         "runs.", MODEL, "--offload"),
    DATA_DIR, RUNS_DIR, DEVICE, NO_EMA,
)  # fmt: skip
"""Where the model runs and how it is held: the options every sampling edit ends with."""
DRAWING = (
    EDIT_GUIDANCE, STYLE,
    flag("upscale", bool, False, "Text models: upscale with IF stage II (--upscaler).", MODEL,
         "--upscale"),
    flag("upscaler", str, DEFAULT_UPSCALER, "The stage II pipeline for --upscale (a folder or "
         "hf:ORG/NAME).", MODEL),
    SEED, OUT, *HELD,
)  # fmt: skip
"""The options after --sampler of the edits that draw from prompts alone (anagram, hybrid,
sample)."""
HINTING = (EDIT_GUIDANCE, STYLE, SEED, OUT, HINT, HINT_IS_EDGES, CONTROL_SCALE, *HELD)
"""The options after --sampler of the edits of one image that a ControlNet steers (sdedit,
inpaint)."""


def _command(name: str, flags: tuple[Flag, ...]):
    """Declare an edit command taking ``flags``, its refusals turned into one ``error:``
    line."""

    def declare(command):
        return app.command(name)(handle_errors(takes(flags)(command)))

    return declare


def _request(cls: Any, o: dict[str, Any]) -> Any:
    """The request ``cls`` of an edit from its options (no --seed: 0)."""
    return picked(cls, o, **({"seed": o["seed"] or 0} if "seed" in o else {}))


def _done(result) -> None:
    """Print the folder an op wrote: the command's one line on stdout."""
    console.out.print(str(result.folder))


@_command("anagram", (
    argument("prompts", list[str], "One prompt per view."),
    flag("views", str, "identity,flip", "Comma-separated views, one per prompt (identity, flip, "
         "mirror, rot90, rot180, rot270, transpose, negate, skew, jigsaw).", None),
    MODEL_SOURCE, IMAGES, STEPS, EDIT_SAMPLER, *DRAWING,
))  # fmt: skip
def anagram(**o: Any) -> None:
    """A visual anagram: one image that reads as each prompt under its view."""
    from diffkit.app.edit import compose, requests

    _done(compose.anagram(_request(requests.AnagramRequest, o), settings_of(o), console))


@_command("hybrid", (
    argument("low", str, "Prompt seen from afar (low frequencies).", show_default=True),
    argument("high", str, "Prompt seen up close (high frequencies).", show_default=True),
    MODEL_SOURCE, flag("sigma", float, 2.0, "Gaussian blur sigma, pixels.", None, min=0.1),
    KERNEL, IMAGES, STEPS, EDIT_SAMPLER, *DRAWING,
))  # fmt: skip
def hybrid(**o: Any) -> None:
    """A hybrid image: the low frequencies of one prompt, the high ones of another."""
    from diffkit.app.edit import compose, requests

    _done(compose.hybrid(_request(requests.HybridRequest, o), settings_of(o), console))


@_command("factorize", (
    argument("prompts", list[str], "One prompt per part, coarsest first."),
    flag("split", Literal["bands", "color"], "bands",
         "bands: Gaussian frequency bands (--sigmas); color: grayscale, then colour.", None),
    flag("sigmas", str, "4,1", "bands: strictly decreasing blur sigmas, one fewer than prompts.",
         None),
    KERNEL, MODEL_SOURCE, IMAGES, STEPS, EDIT_SAMPLER, EDIT_GUIDANCE, STYLE, SEED, OUT, *HELD,
))  # fmt: skip
def factorize(**o: Any) -> None:
    """Factorized diffusion: each prompt controls one part of a split of the image into
    parts that sum to it (frequency bands, or grayscale and colour)."""
    from diffkit.app.edit import compose, requests

    _done(compose.factorize(_request(requests.FactorizeRequest, o), settings_of(o), console))


@_command("sdedit", (
    IMAGE, MODEL_SOURCE,
    flag("start", str, "1,3,5,7,10,20",
         "Grid points to start from, comma-separated (0 = pure noise).", None),
    PROMPT, STEPS.but(default=30), STEERED_SAMPLER, *HINTING,
))  # fmt: skip
def sdedit(**o: Any) -> None:
    """SDEdit: noise an image part-way and denoise it, optionally towards --prompt (and, for
    a ControlNet run, along --hint's edges)."""
    from diffkit.app.edit import images, requests

    _done(images.sdedit(_request(requests.SdeditRequest, o), settings_of(o), console))


@_command("inpaint", (
    IMAGE, MODEL_SOURCE,
    option("mask", str | None, "Mask image of the model's size (white: regenerate).", None),
    option("box", str | None, "Region to regenerate, x0,y0,x1,y1 in pixels.", None),
    option("resample", str | None, "RePaint's jump length and resample count, J,R (DDPMs).",
           None),
    PROMPT, IMAGES.but("Completions."), STEPS, STEERED_SAMPLER, *HINTING,
))  # fmt: skip
def inpaint(**o: Any) -> None:
    """Inpainting: regenerate a masked region; outside it the output equals the input. A
    ControlNet run draws the region along --hint's edges."""
    from diffkit.app.edit import images, requests

    _done(images.inpaint(_request(requests.InpaintRequest, o), settings_of(o), console))


@_command("noise", (
    IMAGE,
    flag("at", str, "0.25,0.5,0.75", "Noise levels t in [0, 1], comma-separated: 0 is the image, "
         "1 pure noise (a DDPM's timestep round(t T), at most T - 1). Values above 1 are DDPM "
         "timesteps 0..T-1 (250,500,750).", None, "--at"),
    option("schedule", Literal["linear", "cosine"] | None, "DDPM betas over T = 1000 steps, "
           "x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps: linear 1e-4..0.02 (Ho et al. 2020) or "
           "cosine (Nichol & Dhariwal 2021). Default linear, unless --flow or --model.", None),
    flag("flow", bool, False, "Rectified-flow interpolation x_t = (1 - t) x_0 + t eps (Liu "
         "et al. 2022) instead of a DDPM schedule.", None, "--flow"),
    option("size", int | None, "Resize the image so its shorter side is N and crop it to N x "
           "N (default: its own size; with --model, the model's).", None, min=1),
    option("model", str | None, "Take the schedule and image size from a model instead (this "
           "loads it): a diffkit run or checkpoint, or a diffusers folder or hf:ORG/NAME.",
           MODEL, None, "--model", "-m"),
    SEED, OUT, DTYPE, DATA_DIR, RUNS_DIR, DEVICE,
))  # fmt: skip
def noise(**o: Any) -> None:
    """The forward process q(x_t | x_0) of an image at chosen noise levels, from a noise
    schedule alone: no model, no weights, no network access. A DDPM schedule (--schedule)
    or rectified-flow interpolation (--flow); --model takes a trained model's instead."""
    from diffkit.app.edit import images, requests

    _done(images.noise(_request(requests.NoiseRequest, o), settings_of(o), console))


@_command("denoise", (
    IMAGE, MODEL_SOURCE,
    flag("start", int, 10, "Grid point of the noisy image (0 = pure noise).", None),
    PROMPT, STEPS.but(default=30), STEERED_SAMPLER, EDIT_GUIDANCE, SEED, OUT, *HELD,
))  # fmt: skip
def denoise(**o: Any) -> None:
    """Noise an image to one grid point, then compare: the best Gaussian blur, the
    one-step x0 estimate and iterative denoising over the rest of the grid."""
    from diffkit.app.edit import images, requests

    _done(images.denoise(_request(requests.DenoiseRequest, o), settings_of(o), console))


@_command("sample", (
    argument("prompts", list[str], "Prompts to draw."), MODEL_SOURCE,
    IMAGES.but("Images per prompt."), STEPS, EDIT_SAMPLER, *DRAWING,
))  # fmt: skip
def sample(**o: Any) -> None:
    """Prompts -> images with classifier-free guidance: one row per prompt."""
    from diffkit.app.edit import prompting, requests

    _done(prompting.sample(_request(requests.SampleRequest, o), settings_of(o), console))


@_command("embed", (
    argument("prompts", list[str], "Prompts to embed."), MODEL_SOURCE, STYLE, DTYPE, RUNS_DIR,
    DEVICE,
))  # fmt: skip
def embed(**o: Any) -> None:
    """Embed prompts with a text model's encoder into the embedding cache, so that later
    edits need no encoder (prompts are stored as given, with --style if set; anagrams and
    hybrids prefix the default style themselves)."""
    from diffkit.app.edit import prompting, requests

    result = prompting.embed(_request(requests.EmbedRequest, o), settings_of(o))
    for text, fresh in result.texts:
        console.info(f"{'embedded' if fresh else 'cached'}: {text!r}")
    console.out.print(str(result.folder))
