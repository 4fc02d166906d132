"""The options of the training commands, each declared once: its flag, help, default,
``--help`` panel and the config key it sets.

A command is a tuple of :class:`Flag` (:func:`takes` turns it into the command's
signature, in that order), and :func:`config_flags` reads the values that set the config.
An option another command words differently is the shared one with :meth:`Flag.but`. The
config fields themselves are pydantic's (``diffkit/config``), which start-up must not
import: the declarations here name their keys instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from copy import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import typer

from diffkit.cli.options import (
    Compile,
    ConfigFile,
    DataDir,
    Device,
    GradAccum,
    Loggers,
    PrintConfig,
    RunsDir,
    Seed,
)

F = TypeVar("F", bound=Callable[..., Any])
REQUIRED = inspect.Parameter.empty

# The panels of ``--help``, in the words of every training command.
MODEL, DATA, OPTIM = "Model", "Data", "Optimisation"
PREVIEW, RUN, MACHINE = "Previews and evaluation", "Run folder", "Machine"
OPTIONS = "Options"  # Typer's first panel, beside --help


@dataclass(frozen=True)
class Flag:
    """One option: the parameter ``name``, its value ``type``, Typer's declaration of it
    (``info``: flag names, help), its ``default``, the ``panel`` of ``--help`` (None for
    an argument) and the dotted config ``key`` it sets (None: the command reads it)."""

    name: str
    type: Any
    info: Any
    panel: str | None
    key: str | None = None
    default: Any = None

    def but(self, help: str | None = None, **changes: Any) -> Flag:
        """The same option as another command has it: other help, default or key."""
        if help is not None:
            info = copy(self.info)
            info.help = help
            changes["info"] = info
        return replace(self, **changes)

    def parameter(self) -> inspect.Parameter:
        info = self.info
        if self.panel is not None:
            info = copy(info)
            info.rich_help_panel = self.panel
        return inspect.Parameter(self.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                 default=self.default,
                                 annotation=Annotated[self.type, info])  # fmt: skip


def option(
    name: str, type: Any, help: str, panel: str, key: str | None = None, *names: str
) -> Flag:
    """An option that defaults to None, "not given" (the config decides), shown without
    a default; ``names`` replace the flag made from ``name`` (``--keep-best`` alone)."""
    return Flag(name, type, typer.Option(*names, help=help, show_default=False), panel, key)


def shared(name: str, alias: Any, panel: str, key: str | None = None, default: Any = None):
    """An option of :mod:`diffkit.cli.options` (an ``Annotated`` alias other commands use
    as well) in a training command."""
    type_, info = get_args(alias)
    return Flag(name, type_, info, panel, key, default)


def takes(flags: Sequence[Flag]) -> Callable[[F], F]:
    """Give a command function that takes ``**options`` the signature of ``flags`` (what
    Typer reads to build its options)."""

    def declare(fn: F) -> F:
        fn.__signature__ = inspect.Signature([f.parameter() for f in flags])  # type: ignore[attr-defined]
        return fn

    return declare


def config_flags(flags: Sequence[Flag], options: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the options that set the config, by dotted key (None = not given)."""
    return {f.key: options[f.name] for f in flags if f.key is not None}


Preset = Literal["tiny", "small", "small-v1", "default"] | None

EPOCHS = option("epochs", int | None, "Passes over the data.", OPTIM, "train.epochs")
BATCH_SIZE = option("batch_size", int | None, "Images per step per process.", OPTIM,
                    "train.batch_size")  # fmt: skip
GRAD_ACCUM = shared("grad_accum", GradAccum, OPTIM, "train.grad_accum")
LR = option("lr", float | None, "Peak learning rate.", OPTIM, "train.lr")
LR_SCHEDULE = option(
    "lr_schedule", Literal["cosine", "constant", "exponential"] | None,
    "LR after warm-up: cosine (default) or exponential decay to --lr-final x peak, or constant.",
    OPTIM, "train.lr_schedule",
)  # fmt: skip
LR_FINAL = option("lr_final", float | None, "LR at the end / peak LR (presets: 0.05 or 0.1).",
                  OPTIM, "train.lr_final_factor")  # fmt: skip
GRAD_CLIP = option("grad_clip", float | None, "Clip the gradient norm to this (default 1).",
                   OPTIM, "train.grad_clip")  # fmt: skip
SEED = shared("seed", Seed, OPTIM, "train.seed")
PRECISION = option("precision", Literal["auto", "fp32", "bf16", "fp16"] | None,
                   "auto = bf16 autocast where the hardware has native bf16.", OPTIM,
                   "train.precision")  # fmt: skip
MAX_STEPS = option("max_steps", int | None, "Stop after this many steps.", OPTIM,
                   "train.max_steps")  # fmt: skip
COMPILE = shared("compile_net", Compile, OPTIM)
SNAPSHOT_EVERY_STEPS = option(
    "snapshot_every_steps", int | None,
    "Save the mean raw weights every N steps, so `diffkit ema` can rebuild the EMA of "
    "any decay afterwards (post-hoc EMA; 0 = never).",
    OPTIM, "train.snapshot_every_steps",
)  # fmt: skip

DATASET = option("dataset", str | None, "mnist | fashion-mnist | cifar10 | folder:PATH.", DATA,
                 "data.dataset")  # fmt: skip
LIMIT_DATA = option("limit_data", int | None, "Train on the first N images only.", DATA,
                    "data.limit")  # fmt: skip
DATA_DIR = shared("data_dir", DataDir, DATA)

SAMPLE_EVERY = option("sample_every", int | None, "Preview grid every N epochs (0 = never).",
                      PREVIEW, "train.sample_every")  # fmt: skip
EVAL_EVERY = option("eval_every", int | None,
                    "FID/KID of the EMA model every N epochs (0 = never).", PREVIEW,
                    "train.eval_every")  # fmt: skip
SAMPLE_EVERY_STEPS = option("sample_every_steps", int | None,
                            "Also a preview grid every N steps.", PREVIEW,
                            "train.sample_every_steps")  # fmt: skip
EVAL_EVERY_STEPS = option("eval_every_steps", int | None, "Also an evaluation every N steps.",
                          PREVIEW, "train.eval_every_steps")  # fmt: skip
EVAL_N = option("eval_n", int | None, "Images per in-training evaluation.", PREVIEW,
                "train.eval_n")  # fmt: skip
KEEP_BEST = option("keep_best", bool | None, "Keep checkpoints/best.safetensors by lowest FID.",
                   PREVIEW, "train.keep_best", "--keep-best")  # fmt: skip
CLASSIFIER = option(
    "classifier", Path | None,
    "Feature classifier for --eval-every, used even below the accuracy bar (with a "
    "warning); default: the most accurate qualified one for the dataset in RUNS_DIR.",
    PREVIEW,
)  # fmt: skip

NAME = option("name", str | None, "Run name (folder suffix).", RUN, "name")
CONFIG = shared("config", ConfigFile, RUN)
PRINT_CONFIG = shared("print_config", PrintConfig, RUN, default=False)
RESUME = option("resume", Path | None, "Continue this run folder exactly where it stopped.", RUN)
RUNS_DIR = shared("runs_dir", RunsDir, RUN)
LOGGERS = shared("loggers", Loggers, RUN)
DEVICE = shared("device", Device, MACHINE)

PRESET = option(
    "preset", Preset,
    "tiny (tests) | small (2-core CPU, ~11 min) | small-v1 (small before issue 20) | "
    "default (the seeds' GPU model; used when no preset is given).",
    MODEL, "preset",
)  # fmt: skip
COND = option("cond", Literal["none", "class"] | None,
              "class: condition on the dataset's labels (classifier-free guidance).", MODEL,
              None, "--cond")  # fmt: skip
COND_ROUTES = option("cond_routes", str | None, "How the label enters the UNet, comma "
                     "separated: time, input, cross (default time).", MODEL)  # fmt: skip
COND_DROP = option("cond_drop", float | None,
                   "Probability of training a label as the null class (default 0.1).", MODEL,
                   "train.cond_drop")  # fmt: skip
MID_BLOCK = option("mid_block", Literal["resnet", "transformer"] | None,
                   "UNet middle: res-attention-res, or DiT blocks with AdaLN-Zero.", MODEL,
                   "model.mid_block")  # fmt: skip
TRANSFORMER_DEPTH = option("transformer_depth", int | None, "DiT blocks in a transformer middle.",
                           MODEL, "model.transformer_depth")  # fmt: skip
TRANSFORMER_HEADS = option("transformer_heads", int | None, "Attention heads of those blocks.",
                           MODEL, "model.transformer_heads")  # fmt: skip
SCHEDULE = option("schedule", Literal["linear", "cosine"] | None, "Noise schedule.", MODEL,
                  "diffusion.schedule")  # fmt: skip
PREDICTION = option("prediction", Literal["eps", "x0", "v", "edm"] | None,
                    "What the network predicts (edm: Karras et al. 2022 preconditioning).",
                    MODEL, "diffusion.prediction")  # fmt: skip
NOISE_LEVELS = option("noise_levels", Literal["uniform", "log_normal"] | None,
                      "Training noise levels: uniform timesteps, or EDM's log-normal sigma.",
                      OPTIONS, "diffusion.noise_levels")  # fmt: skip
TIME_SAMPLING = option("time_sampling", Literal["uniform", "logit_normal"] | None,
                       "Training times: logit_normal (default; more weight mid-path) or uniform.",
                       MODEL, "flow.time_sampling")  # fmt: skip

COND_OPTIONS = (COND, COND_ROUTES, COND_DROP)
MACHINE_OPTIONS = (DATA_DIR, RUNS_DIR, NAME, CONFIG, DEVICE, PRECISION, SEED, MAX_STEPS,
                   LIMIT_DATA)  # fmt: skip
PREVIEWS = (SAMPLE_EVERY, EVAL_EVERY, SAMPLE_EVERY_STEPS, SNAPSHOT_EVERY_STEPS, EVAL_EVERY_STEPS,
            EVAL_N, KEEP_BEST, CLASSIFIER)  # fmt: skip
CLOSING = (LOGGERS, COMPILE, PRINT_CONFIG)
"""Runs of options in the order every training command lists them."""
