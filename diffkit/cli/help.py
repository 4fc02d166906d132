"""How ``--help`` reads: command order, one-line summaries, option panels, metavars.

Applied once to the built command tree (:func:`polish`, from the root group), so every
command follows the same conventions without repeating them in each option declaration:

- commands in the order a user meets them (train, sample, edit, eval, reflow, ...);
- the command list shows one short line per command (the first sentence of its help);
- options grouped into panels by what they are about (model, sampler, guidance, cache,
  output, machine, ...): each option's declaration names its panel (diffkit.cli.flags);
- flags show no type, values show ``INT``, ``FLOAT``, ``PATH``, ``TEXT`` or their choices
  (``a|b|c``) instead of ``<bool>``, ``<int range>`` and the like; arguments are written
  ``SOURCE`` in the usage line, not ``{source}``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

COMMAND_ORDER = ("train", "sample", "edit", "eval", "reflow", "cache-bench", "distill",
                 "denoise-bench", "ema", "export", "data", "runs")  # fmt: skip
"""Root commands in this order; any other command follows, in registration order."""

SUMMARY = {
    "train": "Train a model into a self-describing run folder.",
    "train ddpm": "A DDPM on pixels or, with --latent, on a VAE's latents.",
    "train rf": "A rectified flow on pixels or, with --vae, on a VAE's latents.",
    "train ldm": "Latent diffusion: a DDPM on a trained VAE's latents.",
    "train classifier": "The feature classifier that diffkit eval scores with.",
    "train vae": "The VAE (autoencoder) of latent diffusion.",
    "train controlnet": "A ControlNet on edge maps over a frozen base model.",
    "train denoiser": "A single-step denoiser at one or a range of noise levels.",
    "sample": "Sample images from a run, a checkpoint or a diffusers model.",
    "edit": "Edit images: visual anagrams, hybrids, SDEdit, inpainting.",
    "edit anagram": "A visual anagram: one image, a different prompt in each view.",
    "edit hybrid": "A hybrid image: one prompt far away, another up close.",
    "edit factorize": "Factorized diffusion: a prompt per frequency band.",
    "edit sdedit": "SDEdit: noise an image part way, then denoise it.",
    "edit inpaint": "Inpainting: fill a masked region (RePaint resampling).",
    "edit noise": "The forward process q(x_t | x_0) of an image, from a schedule alone.",
    "edit denoise": "Noise an image to one level, then denoise it in one step and in many.",
    "edit sample": "Prompts to images with classifier-free guidance.",
    "edit embed": "Cache prompt embeddings so that later edits need no text encoder.",
    "eval": "Score a model or saved samples: FID, KID, IS, precision/recall.",
    "reflow": "Straighten a flow: pairs from its ODE, a reflowed flow, straightness.",
    "reflow make-pairs": "Integrate a flow from fixed noise into (noise, sample) pairs.",
    "reflow train": "Train the next rectified flow (or a distilled one) on pairs.",
    "reflow straightness": "How far a flow's ODE paths are from straight lines.",
    "cache-bench": "DeepCache speed-up against quality at each cache interval.",
    "distill": "Few-step students of a DDPM or flow: consistency models, reflow.",
    "denoise-bench": "PSNR of denoisers over noise levels, with baselines.",
    "ema": "Post-hoc EMA: rebuild a run's EMA at other decays from snapshots.",
    "export": "Write a run as a folder that diffusers loads.",
    "data": "Prepare datasets: decode once into memory-mappable arrays.",
    "data prepare": "Decode a dataset into raw arrays that training memory-maps.",
    "runs": "List runs and pair sets: status, steps, best scores.",
}
"""The command lists' one line per command (``--help`` of the command has the rest)."""


def polish(group: Any, path: str = "") -> None:
    """Apply the conventions above to ``group`` and every command below it."""
    for name, command in group.commands.items():
        where = f"{path} {name}".strip()
        command.help = _reflow(command.help)
        if command.short_help is None and command.help:
            command.short_help = SUMMARY.get(where) or _first_sentence(command.help)
        if hasattr(command, "commands"):
            _quiet_help_option(command)
            polish(command, where)
            continue
        _quiet_help_option(command)
        for param in command.params:
            _polish_param(param)


def polish_params(params: list[Any]) -> list[Any]:
    """The root group's own options (--version, --help, the completion ones)."""
    for param in params:
        _polish_param(param)
        _bool_default(param)
    return params


def _bool_default(param: Any) -> None:
    """A flag that defaults to None (--help, the completion ones) defaults to False: Typer
    coerces a flag's value that is not a bool through pydantic, whose import cost every
    command about 0.2 s of start-up; False means the same (not asked)."""
    if getattr(param, "is_flag", False) and param.default is None:
        param.default = False


def _quiet_help_option(command: Any) -> None:
    """``--help`` is made per call (click's ``get_help_option``); it is a flag, so no type."""
    make = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None:
            option.metavar = ""
            _bool_default(option)
        return option

    command.get_help_option = get_help_option


def _polish_param(param: Any) -> None:
    if param.param_type_name == "argument":
        # Typer writes a required argument as {name} in the usage line; click's own
        # convention, and every man page's, is the upper-case name.
        label = (param.metavar or param.name).upper()
        many = "..." if param.nargs != 1 else ""
        kind = _metavar(param) + many
        param.metavar = label
        param._usage_display_name = lambda: label + many
        param.display_type_rich = lambda ctx: kind  # the types column: PATH, not <path>
        return
    if param.metavar is not None:
        return
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        param.metavar = ""  # a flag takes no value: show no type
    else:
        param.metavar = _metavar(param)


def _metavar(param: Any) -> str:
    desc = param.type_descriptor  # Typer's description of the annotation
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    if desc.is_path:
        return "PATH"
    name = (desc.ranged_type_name if desc.is_ranged else param.bare_type()).lower()
    if "int" in name:
        return "INT"
    if "float" in name:
        return "FLOAT"
    return "TEXT"


def _reflow(text: str | None) -> str | None:
    """Help text with its paragraphs' line breaks removed: docstrings wrap at 80-100
    columns, and rich keeps those breaks, so at another terminal width lines end
    mid-sentence."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _first_sentence(text: str) -> str:
    """The command list's summary: the first paragraph's first sentence (up to ": " or
    ". "), so the list stays one line per command."""
    first = text.split("\n\n", 1)[0]
    match = re.search(r"(?<=[a-z0-9)])[.:;] ", first)
    return first[: match.start()] + "." if match else first
