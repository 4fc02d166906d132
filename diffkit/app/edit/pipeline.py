"""What the edit operations share: the model they open, the defaults it implies, the
conditions of prompts and hints, and seeded sampling under a combined network."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from diffkit.app.common import hinted, model_class_names, parse_classes, progress_total
from diffkit.app.edit.requests import ANCESTRAL, DEFAULT_TEXT_PROMPT
from diffkit.app.report import Reporter
from diffkit.config.settings import Settings
from diffkit.errors import UsageError
from diffkit.external import is_foreign
from diffkit.models.conditioning import Cond
from diffkit.samplers import registry

TEXT_GUIDANCE = 7.0  # CS180's w on IF stage I


def open_model(source: str, settings: Settings, *, views: bool, dtype: str | None = None,
               offload: bool = False, no_ema: bool = False, hints: bool = False):  # fmt: skip
    """The pipeline of ``source`` (diffkit run or diffusers pipeline) on the settings'
    device; a ControlNet run only for the ops that take a hint (``hints``), no latent
    model (``views``: the op's views and filters act on pixels)."""
    from diffkit.training.hardware import resolve_device

    where = resolve_device(settings.device)
    if is_foreign(source):
        from diffkit.external.diffusers import load_diffusers

        return load_diffusers(source, where, dtype=dtype or "fp32",
                              cache_dir=settings.cache_dir, offload=offload)  # fmt: skip
    if dtype is not None or offload:
        raise UsageError("--dtype and --offload are for diffusers models; diffkit runs use "
                         "the precision they were trained in")  # fmt: skip
    if not Path(source).exists():
        raise UsageError(f"--model {source}: no such run, checkpoint or pipeline folder")
    from diffkit.methods.controlnet import is_controlled
    from diffkit.methods.load import load_pipeline

    pipe = load_pipeline(Path(source), where, use_ema=not no_ema)
    if is_controlled(pipe.model) and not hints:
        raise UsageError(f"{source} is a ControlNet: sdedit and inpaint take its --hint; this "
                         "op would need a hint per view or prompt (use the base run)")  # fmt: skip
    if pipe.model.codec is not None:
        why = ("views and filters act on pixels, and a VAE is not equivariant to flips"
               if views else "editing latent models is not supported yet")  # fmt: skip
        raise UsageError(f"{source} is a latent model: {why}")
    return pipe


def is_text(pipe) -> bool:
    return pipe.model.conditioning == "text"


def defaults(pipe, sampler: str | None, guidance: float | None, class_guidance: float,
             steps: int, steers: str | None = None) -> tuple[str, float]:  # fmt: skip
    """The sampler and guidance scale an op uses when not told, the sampler checked
    against ``steps``; ``steers`` says how the op steers the sampler ("sdedit starts it
    part-way"), which an adaptive solver cannot do: it is refused here, before any network
    runs, naming the samplers that can."""
    sampler = sampler or (ANCESTRAL if is_text(pipe) else pipe.DEFAULT_SAMPLER)
    if guidance is None:
        guidance = TEXT_GUIDANCE if is_text(pipe) else class_guidance
    try:
        pipe.check(sampler, steps)
        pipe.options(sampler, {})
    except ValueError as exc:
        raise UsageError(f"--sampler/--steps: {exc}") from None
    if steers is not None and registry.sampler_spec(sampler).adaptive:
        steerable = ", ".join(registry.fixed_step(pipe.SAMPLERS))
        raise UsageError(f"--sampler {sampler} is adaptive (it picks its own steps) and "
                         f"{steers}; the samplers that can be steered: {steerable}")  # fmt: skip
    return sampler, guidance


def styled(prompt: str, style: str | None) -> str:
    return f"{style} {prompt}" if style else prompt


def conditions(pipe, prompts: list[str] | tuple[str, ...], n: int,
               style: str | None = None) -> list[Cond]:  # fmt: skip
    """Each prompt as a condition of ``n`` rows: its text embeddings (text models, with
    ``style`` prefixed) or its class."""
    if is_text(pipe):
        texts = [styled(p, style) for p in prompts]
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


def prompt_of(pipe, prompt: str | None) -> str | None:
    """An op's optional prompt; text models always need one."""
    return DEFAULT_TEXT_PROMPT if prompt is None and is_text(pipe) else prompt


def prompt_condition(pipe, prompt: str | None, n: int, style: str | None = None):
    """The condition of an op's one optional prompt (defaulted by :func:`prompt_of`), or
    None; and the prompt used."""
    prompt = prompt_of(pipe, prompt)
    return (conditions(pipe, [prompt], n, style)[0] if prompt is not None else None), prompt


def with_hint(pipe, hint: str | None, is_edges: bool, scale: float, data_dir: Path):
    """The pipeline steered at ``scale`` and the one hint of ``hint`` (a ControlNet run),
    or None; hints steer one image, so a SPEC naming several is refused."""
    control = {"scale": scale, "start": 0.0, "end": 1.0, "guess": False}
    pipe, hints = hinted(pipe, hint, is_edges, control, data_dir)
    if hints is not None and len(hints) != 1:
        raise UsageError(f"--hint {hint} names {len(hints)} images; an edit takes one")
    return pipe, hints


def hinted_condition(cond: Cond | None, hints, n: int) -> Cond | None:
    """``cond`` (or none) with the hint in each of its ``n`` rows."""
    if hints is None:
        return cond
    maps = hints.maps[:1].expand(n, -1, -1, -1)  # (n, 1, H, W)
    return Cond(hint=maps) if cond is None else replace(cond, hint=maps)


def resident(pipe, offload: bool):
    """The context a sampling loop runs in: the UNet moved to the device for it under
    ``offload``."""
    if not offload:
        return nullcontext()
    from diffkit.external.diffusers import on_device

    return on_device(pipe.model, pipe.device)


def integrate(pipe, net, sampler: str, steps: int, n: int, seed: int, label: str,
              report: Reporter, offload: bool = False) -> torch.Tensor:  # fmt: skip
    """``n`` images from seeded noise under a combined network, (n, C, H, W) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, *pipe.model.sample_shape, generator=g).to(pipe.device)
    gen = torch.Generator(pipe.device).manual_seed(seed + 1)
    opts = pipe.options(sampler, {})
    with (
        resident(pipe, offload),
        report.steps(label, progress_total(sampler, steps, 1, 1)) as tick,
    ):
        x, _ = pipe.integrate(net, noise, sampler, steps, opts, gen, tick)
    return x.float().cpu().clamp(-1, 1)
