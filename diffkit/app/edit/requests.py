"""The requests of the edit operations and what they return.

A request carries the values of its command's flags, list-valued ones (``--start``,
``--at``, ``--sigmas``, ...) as the text given, since the messages that refuse them quote
it. Checks that need no model run when the request is made, as the CLI did before it
loaded one. This module imports nothing heavy: the CLI reads its defaults at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from diffkit.errors import UsageError
from diffkit.samplers import registry

DEFAULT_MODEL = "hf:DeepFloyd/IF-I-M-v1.0"
ANCESTRAL = registry.ancestral()  # IF's pipeline samples with it; stage II and RePaint do
DEFAULT_UPSCALER = "hf:DeepFloyd/IF-II-M-v1.0"
DEFAULT_STYLE = "an oil painting of"  # anagrams and hybrids on text models (docs/editing.md)
DEFAULT_TEXT_PROMPT = "a high quality photo"  # CS180's prompt for SDEdit and denoising

Dtype = Literal["fp32", "fp16", "bf16"]


@dataclass(frozen=True, kw_only=True)
class EditRequest:
    """What every edit that writes a folder takes: the model (a diffkit run or checkpoint,
    a diffusers folder or ``hf:ORG/NAME``), a diffusers UNet's precision (None: fp32), the
    seed and the output folder (None: ``RUNS_DIR/edit/<stamp>-<op>``)."""

    model: str = DEFAULT_MODEL
    dtype: Dtype | None = None
    seed: int = 0
    out: Path | None = None


@dataclass(frozen=True, kw_only=True)
class GuidedRequest(EditRequest):
    """An edit that runs a sampler. ``sampler`` None: the ancestral sampler on text models
    (as IF's pipeline), DDIM otherwise; ``guidance`` None: 7 on text models, the op's own
    on class models. ``offload`` keeps each network of a diffusers model on the device
    only while it runs; ``no_ema`` samples a diffkit run's raw weights."""

    steps: int = 50
    sampler: str | None = None
    guidance: float | None = None
    offload: bool = False
    no_ema: bool = False


@dataclass(frozen=True, kw_only=True)
class AnagramRequest(GuidedRequest):
    """A visual anagram: one image that reads as each prompt under its view (``views``:
    comma-separated view names, one per prompt). ``style`` prefixes every prompt of a text
    model (None: :data:`DEFAULT_STYLE`, "" for none); ``upscale``: IF stage II after."""

    prompts: tuple[str, ...]
    views: str = "identity,flip"
    n: int = 4
    style: str | None = None
    upscale: bool = False
    upscaler: str = DEFAULT_UPSCALER


def _odd(kernel: int) -> None:
    if kernel % 2 == 0:
        raise UsageError("--kernel must be odd")


@dataclass(frozen=True, kw_only=True)
class HybridRequest(GuidedRequest):
    """A hybrid image: the frequencies below a Gaussian blur of ``sigma`` pixels (an odd
    ``kernel``) from the ``low`` prompt, those above it from ``high``."""

    low: str
    high: str
    sigma: float = 2.0
    kernel: int = 33
    n: int = 4
    style: str | None = None
    upscale: bool = False
    upscaler: str = DEFAULT_UPSCALER

    def __post_init__(self) -> None:
        _odd(self.kernel)


@dataclass(frozen=True, kw_only=True)
class FactorizeRequest(GuidedRequest):
    """Factorized diffusion: each prompt (coarsest first) controls one part of a split
    into ``bands`` (blurs of the strictly decreasing ``sigmas``, "4,1") or ``color``
    (grayscale, then colour)."""

    prompts: tuple[str, ...]
    split: Literal["bands", "color"] = "bands"
    sigmas: str = "4,1"
    kernel: int = 33
    n: int = 4
    style: str | None = None

    def __post_init__(self) -> None:
        _odd(self.kernel)


@dataclass(frozen=True, kw_only=True)
class HintedRequest(GuidedRequest):
    """An edit of one ``image`` (a file or ``DATASET:SPLIT:INDEX``), towards ``prompt``
    (a class, or text; None: none, :data:`DEFAULT_TEXT_PROMPT` on text models) and, on a
    ControlNet run, along ``hint`` (its residuals scaled by ``control_scale``)."""

    image: str
    prompt: str | None = None
    style: str | None = None
    hint: str | None = None
    hint_is_edges: bool = False
    control_scale: float = 1.0


@dataclass(frozen=True, kw_only=True)
class SdeditRequest(HintedRequest):
    """SDEdit from each grid point of ``start`` (comma-separated; 0 = pure noise)."""

    start: str = "1,3,5,7,10,20"
    steps: int = 30


@dataclass(frozen=True, kw_only=True)
class InpaintRequest(HintedRequest):
    """``n`` completions of the region white in ``mask`` (a file) or inside ``box``
    ("x0,y0,x1,y1"; exactly one of the two); ``resample`` "J,R": RePaint's jump length and
    resample count."""

    mask: str | None = None
    box: str | None = None
    resample: str | None = None
    n: int = 4

    def __post_init__(self) -> None:
        if (self.mask is None) == (self.box is None):
            raise UsageError("give exactly one of --mask and --box")


@dataclass(frozen=True, kw_only=True)
class NoiseRequest(EditRequest):
    """The forward process q(x_t | x_0) of ``image`` at the levels ``at`` (comma-separated
    t in [0, 1], 0 the image and 1 pure noise, or DDPM timesteps above 1:
    :mod:`diffkit.schedules.forward`). It needs a noise schedule, no network: ``schedule``'s
    DDPM betas over 1000 steps (None: linear), or with ``flow`` rectified-flow
    interpolation; or ``model``'s own schedule (a diffkit run or checkpoint, a diffusers
    folder or ``hf:ORG/NAME``: the one case that loads weights). Without a model the image
    keeps its own size, or is resized and cropped to ``size`` x ``size``."""

    image: str
    model: str | None = None
    schedule: Literal["linear", "cosine"] | None = None
    flow: bool = False
    at: str = "0.25,0.5,0.75"
    size: int | None = None

    def __post_init__(self) -> None:
        from diffkit.schedules.forward import parse_levels

        if self.model is not None and (self.schedule is not None or self.flow):
            raise UsageError("--model brings its own schedule; give --model, --schedule or "
                             "--flow, not two")  # fmt: skip
        if self.schedule is not None and self.flow:
            raise UsageError("--schedule picks DDPM betas and --flow the rectified-flow "
                             "interpolation; give one")  # fmt: skip
        if self.model is None and self.dtype is not None:
            raise UsageError("--dtype is the precision of a diffusers --model")
        if self.model is not None and self.size is not None:
            raise UsageError("--size is for noise without --model: a model's images have "
                             "its size")  # fmt: skip
        try:
            parse_levels(self.at)
        except ValueError as exc:
            raise UsageError(f"--at {self.at}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class DenoiseRequest(GuidedRequest):
    """``image`` noised to grid point ``start``, then the best blur, the one-step x0
    estimate and iterative denoising compared."""

    image: str
    start: int = 10
    prompt: str | None = None
    steps: int = 30


@dataclass(frozen=True, kw_only=True)
class SampleRequest(GuidedRequest):
    """``n`` images per prompt with classifier-free guidance."""

    prompts: tuple[str, ...]
    n: int = 4
    style: str | None = None
    upscale: bool = False
    upscaler: str = DEFAULT_UPSCALER


@dataclass(frozen=True, kw_only=True)
class EmbedRequest:
    """Prompts for a text model's embedding cache, each prefixed with ``style`` if set."""

    prompts: tuple[str, ...]
    model: str = DEFAULT_MODEL
    style: str | None = None
    dtype: Dtype | None = None

    def __post_init__(self) -> None:
        from diffkit.external import is_foreign

        if not is_foreign(self.model):
            raise UsageError(f"--model {self.model} is not a text model; its prompts are classes")


@dataclass(frozen=True)
class EditResult:
    """The folder an edit wrote and what its edit.json records."""

    folder: Path
    meta: dict[str, Any]


@dataclass(frozen=True)
class EmbedResult:
    """The embedding cache and each prompt's text, in order, with whether it was embedded
    now (False: it was cached already)."""

    folder: Path
    texts: tuple[tuple[str, bool], ...] = ()
