"""Every command's options, each declared once: its flag, help, default, ``--help`` panel
and, for a training command, the config key it sets.

A command is a tuple of :class:`Flag` (:func:`takes` turns it into the command's
signature, in that order), and :func:`config_flags` reads the values that set the config.
An option another command words differently, or shows in another panel, is the shared one
with :meth:`Flag.but`. The config fields themselves are pydantic's (``diffkit/config``),
which start-up must not import: the declarations here name their keys instead.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from copy import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from diffkit.cli.options import check_config_seed, check_seed, in_range

REQUIRED = inspect.Parameter.empty

# The panels of ``--help``, the same for the same option in every command.
MODEL, DATA, OPTIM = "Model", "Data", "Optimisation"
PREVIEW, RUN, MACHINE = "Previews and evaluation", "Run folder", "Machine"
OPTIONS = "Options"  # Typer's first panel, beside --help
SAMPLER, GUIDANCE, CACHE = "Sampler", "Guidance", "DeepCache"
METRICS, OUTPUT = "Metrics", "Output"


@dataclass(frozen=True)
class Flag:
    """One option: the parameter ``name``, its value ``type``, Typer's declaration of it
    (``info``: flag names, help), its ``default``, the ``panel`` of ``--help`` (None: Typer's
    first, or an argument) and the dotted config ``key`` it sets (None: the command reads
    it)."""

    name: str
    type: Any
    info: Any
    panel: str | None
    key: str | None = None
    default: Any = None

    def but(self, help: str | None = None, **changes: Any) -> Flag:
        """The same option as another command has it: other help, default, panel or key."""
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


@dataclass(frozen=True)
class Deferred:
    """An option read from the sampler registry when the command is built, not when its
    module is imported, so that a sampler registered before the command runs is offered
    too: ``make`` returns its :class:`Flag`."""

    name: str
    make: Callable[[], Flag]
    key = None

    def parameter(self) -> inspect.Parameter:
        return self.make().parameter()


def option(name: str, type: Any, help: str, panel: str | None, key: str | None = None,
           *names: str, **info: Any) -> Flag:  # fmt: skip
    """An option that defaults to None, "not given" (the config or the command decides),
    shown without a default; ``names`` replace the flag made from ``name`` (``--keep-best``
    alone); ``info``: more of Typer's settings (a callback, ``min``)."""
    info = {"help": help, "show_default": False, **info}
    return Flag(name, type, typer.Option(*names, **info), panel, key)


def flag(name: str, type: Any, default: Any, help: str, panel: str | None, *names: str,
         **info: Any) -> Flag:  # fmt: skip
    """An option with a ``default`` of its own (shown in ``--help`` unless ``info`` says
    ``show_default=False``)."""
    return Flag(name, type, typer.Option(*names, help=help, **info), panel, default=default)


def argument(name: str, type: Any, help: str, default: Any = REQUIRED, **info: Any) -> Flag:
    """A positional argument (shown without a default)."""
    info = {"help": help, "show_default": False, **info}
    return Flag(name, type, typer.Argument(**info), None, default=default)


class _Declared:
    """A command function that takes ``**options``, with the signature of its flags (what
    Typer reads to build its options), made each time Typer asks for it."""

    def __init__(self, fn: Callable[..., Any], flags: Sequence[Flag | Deferred]) -> None:
        functools.update_wrapper(self, fn)
        self.__annotations__ = {}  # the signature says it all
        self.flags = tuple(flags)

    def __call__(self, **options: Any) -> Any:
        return self.__wrapped__(**options)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.Signature([f.parameter() for f in self.flags])


def takes(flags: Sequence[Flag | Deferred]) -> Callable[[Callable[..., Any]], Any]:
    """Give a command function that takes ``**options`` the signature of ``flags``."""
    return lambda fn: _Declared(fn, flags)


def config_flags(flags: Sequence[Flag], options: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the options that set the config, by dotted key (None = not given)."""
    return {f.key: options[f.name] for f in flags if f.key is not None}


def any_sampler(help: Callable[[], str]) -> Deferred:
    """``--sampler``/``--solver``: any registered sampler, ``help`` read with the choices."""
    from diffkit.cli.choices import sampler_names

    return Deferred("sampler", lambda: option("sampler", sampler_names() | None, help(), SAMPLER,
                                              None, "--sampler", "--solver"))  # fmt: skip


# Options of several commands: machine, sampler, guidance, cache, metrics, output.
DATA_DIR = option("data_dir", Path | None,
                  "Folder holding <dataset>/ files (env DIFFKIT_DATA_DIR).", MACHINE)  # fmt: skip
RUNS_DIR = option("runs_dir", Path | None,
                  "Where run folders go (env DIFFKIT_RUNS_DIR; default ./runs).",
                  MACHINE)  # fmt: skip
DEVICE = option("device", Literal["auto", "cpu", "cuda"] | None,
                "Hardware (env DIFFKIT_DEVICE; default auto).", MACHINE)  # fmt: skip
COMPILE = option(
    "compile_net", bool | None,
    "torch.compile the network (env DIFFKIT_COMPILE); if compiling fails, a warning and eager "
    "execution.",
    MODEL, None, "--compile",
)  # fmt: skip
NO_EMA = flag("no_ema", bool, False, "Use raw, not EMA, weights.", MODEL, "--no-ema")
SEED = option("seed", int | None, "Random seed (0 .. 2^63 - 2).", SAMPLER, callback=check_seed)
# fp32 arithmetic cannot resolve a relative error much below 1e-7: tighter tolerances make
# the adaptive solver's step size underflow instead of giving better samples.
RTOL = Deferred("rtol", lambda: flag(
    "rtol", float, 1e-3, f"{_adaptive()} relative tolerance (1e-6 .. 1).", SAMPLER,
    callback=in_range(1e-6, 1.0)))  # fmt: skip
ATOL = Deferred("atol", lambda: flag(
    "atol", float, 1e-3, f"{_adaptive()} absolute tolerance (1e-9 .. 1).", SAMPLER,
    callback=in_range(1e-9, 1.0)))  # fmt: skip
ETA = flag("eta", float, 0.0, "DDIM noise scale (0 = deterministic, 1 = DDPM-like).", SAMPLER,
           callback=in_range(0.0))  # fmt: skip
SPACING = option(
    "spacing", Literal["leading", "trailing", "linspace", "karras"] | None,
    "DDPM timestep grid for fewer steps than T (default: the model's; trailing for diffkit "
    "runs, the scheduler's for diffusers models); karras: Karras et al. 2022's rho = 7 noise "
    "levels, rounded to timesteps.",
    SAMPLER, None, "--spacing",
)  # fmt: skip
GUIDANCE_SCALE = flag(
    "guidance", float, 1.0,
    "Classifier-free guidance scale w for class-conditional models (1 = plain conditional, "
    "0 = unconditional); with --guide-model, the autoguidance scale instead.",
    GUIDANCE, callback=in_range(0.0),
)  # fmt: skip
GUIDE_MODEL = option(
    "guide_model", Path | None,
    "Autoguidance (Karras et al. 2024): guide the model by a weaker version of itself, a run "
    "or checkpoint of the same recipe trained shorter or smaller (e.g. RUN/checkpoints/"
    "epoch-0001.safetensors), with scale --guidance; for unconditional and "
    "class-conditional models alike (it replaces classifier-free guidance).",
    GUIDANCE,
)  # fmt: skip
GUIDANCE_INTERVAL = option(
    "guidance_interval", str | None,
    "LO:HI: guide (classifier-free or autoguidance) only where the noise level sigma "
    "(x_t / a_t = x_0 + sigma eps) lies in (LO, HI], the model alone elsewhere, at one "
    "evaluation per step (Kynkäänniemi et al. 2024; default: everywhere).",
    GUIDANCE,
)  # fmt: skip
HINT = option(
    "hint", str | None,
    "ControlNet runs: the hint, an image file, a folder of images or dataset items "
    "DATASET:SPLIT[:A..B] (mnist:test:0..63); edge maps are made from them as in training.",
    GUIDANCE, None, "--hint",
)  # fmt: skip
HINT_IS_EDGES = flag("hint_is_edges", bool, False,
                     "The --hint files are edge maps already (grayscale).", GUIDANCE,
                     "--hint-is-edges")  # fmt: skip
CONTROL_SCALE = flag("control_scale", float, 1.0,
                     "ControlNet residual scale (0 = the base model).", GUIDANCE,
                     callback=in_range(0.0))  # fmt: skip
CONTROL = (
    HINT, HINT_IS_EDGES, CONTROL_SCALE,
    flag("control_start", float, 0.0,
         "ControlNet acts from this fraction of the way from noise to data...", GUIDANCE,
         callback=in_range(0.0, 1.0)),
    flag("control_end", float, 1.0, "...to this one.", GUIDANCE, callback=in_range(0.0, 1.0)),
    flag("guess_mode", bool, False,
         "ControlNet guess mode: residuals weighted 0.1 (shallow) to 1 (middle); with guidance "
         "only the conditional half sees the hint.", GUIDANCE, "--guess-mode"),
)  # fmt: skip
"""The ControlNet options of sample and eval, in their order (app.common.ControlRequest)."""
CACHE_OPTIONS = (
    flag("cache_branch", int, 1, "DeepCache: skip connections kept in the shallow branch "
         "(1 = shallowest, fastest).", CACHE, min=1),
    flag("cache_schedule", Literal["uniform", "quadratic"], "uniform",
         "DeepCache: a full evaluation every N calls, or quadratic around --cache-center.",
         CACHE),
    flag("cache_center", float, 0.0,
         "DeepCache quadratic schedule: where full evaluations are densest, as a fraction of "
         "the trajectory (0 = first step).", CACHE, callback=in_range(0.0, 1.0)),
    flag("cache_mode", Literal["reuse", "linear"], "linear",
         "DeepCache: reuse the last deep feature, or extrapolate from the last two.", CACHE),
)  # fmt: skip
"""DeepCache's options after --cache-interval (app.common.CacheRequest)."""
FEATURES = flag(
    "features", Literal["classifier", "inception", "tf-inception"], "classifier",
    "Feature network for the metrics: classifier (diffkit's), inception (local torchvision "
    "weights) or tf-inception (the TF-Inception of published FIDs, through torch-fidelity: "
    "the fid extra; local weights only).",
    METRICS, "--features", metavar="NET",
)  # fmt: skip
CLASSIFIER_PATH = option(
    "classifier", Path | None,
    "Classifier run or file, used even below the accuracy bar (with a warning); default: the "
    "most accurate qualified one for the dataset in RUNS_DIR.",
    METRICS,
)  # fmt: skip
TF_INCEPTION_WEIGHTS = option(
    "tf_inception_weights", Path | None,
    "torch-fidelity's TF-Inception .pth for --features tf-inception (env "
    "DIFFKIT_TF_INCEPTION_WEIGHTS; default: torch hub cache). Never downloaded.",
    METRICS,
)  # fmt: skip
LPIPS = flag(
    "lpips", bool, False,
    "Also score LPIPS: the samples' diversity (mean distance of random pairs), or for a VAE "
    "run the reconstruction distance (the lpips extra).",
    METRICS, "--lpips",
)  # fmt: skip
LPIPS_NET = flag("lpips_net", Literal["alex", "vgg"], "alex", "LPIPS backbone.", METRICS,
                 "--lpips-net")  # fmt: skip
LPIPS_WEIGHTS = option(
    "lpips_weights", Path | None,
    "torchvision's ImageNet backbone .pth for --lpips (env DIFFKIT_LPIPS_WEIGHTS; default: "
    "torch hub cache). Never downloaded.",
    METRICS,
)  # fmt: skip
OVERWRITE = flag("overwrite", bool, False, "Replace an existing --out folder (default: refuse).",
                 OUTPUT, "--overwrite")  # fmt: skip
BATCH = flag("batch_size", int, 500, "Images per forward pass.", SAMPLER)


def _adaptive() -> str:
    """The adaptive ODE solver (the one --rtol and --atol are for)."""
    from diffkit.samplers import registry

    solvers = registry.names("flow")
    return next(n for n in solvers if n not in registry.fixed_step(solvers))


Preset = Literal["tiny", "small", "small-v1", "default"] | None

EPOCHS = option("epochs", int | None, "Passes over the data.", OPTIM, "train.epochs")
BATCH_SIZE = option("batch_size", int | None, "Images per step per process.", OPTIM,
                    "train.batch_size")  # fmt: skip
GRAD_ACCUM = option(
    "grad_accum", int | None,
    "Micro-batches per step: each batch is split into this many and their gradients summed "
    "before the step (less memory, the same --batch-size per step; default 1). Random draws "
    "are per micro-batch: the same training in distribution, not bit for bit.",
    OPTIM, "train.grad_accum",
)  # fmt: skip
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
TRAIN_SEED = option("seed", int | None, "Random seed (0 .. 2^31 - 1).", OPTIM, "train.seed",
                    callback=check_config_seed)  # fmt: skip
PRECISION = option("precision", Literal["auto", "fp32", "bf16", "fp16"] | None,
                   "auto = bf16 autocast where the hardware has native bf16.", OPTIM,
                   "train.precision")  # fmt: skip
MAX_STEPS = option("max_steps", int | None, "Stop after this many steps.", OPTIM,
                   "train.max_steps")  # fmt: skip
TRAIN_COMPILE = COMPILE.but(panel=OPTIM)
SNAPSHOT_EVERY_STEPS = option(
    "snapshot_every_steps", int | None,
    "Save the mean raw weights every N steps, so `diffkit ema` can rebuild the EMA of "
    "any decay afterwards (post-hoc EMA; 0 = never).",
    OPTIM, "train.snapshot_every_steps",
)  # fmt: skip

DATASET = option("dataset", str | None, "mnist | fashion-mnist | cifar10 | folder:PATH | "
                 "prepared:DIR (`diffkit data prepare`).", DATA, "data.dataset")  # fmt: skip
LIMIT_DATA = option("limit_data", int | None, "Train on the first N images only.", DATA,
                    "data.limit")  # fmt: skip
TRAIN_DATA_DIR = DATA_DIR.but(panel=DATA)

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
CLASSIFIER = CLASSIFIER_PATH.but(
    "Feature classifier for --eval-every, used even below the accuracy bar (with a warning); "
    "default: the most accurate qualified one for the dataset in RUNS_DIR.",
    panel=PREVIEW,
)  # fmt: skip

NAME = option("name", str | None, "Run name (folder suffix).", RUN, "name")
CONFIG = option("config", Path | None, "TOML, YAML or JSON file with run settings.", RUN,
                None, "--config")  # fmt: skip
PRINT_CONFIG = flag(
    "print_config", bool, False,
    "Print the fully resolved config as TOML (for --config) and exit; nothing is written.",
    RUN, "--print-config",
)  # fmt: skip
RESUME = option("resume", Path | None, "Continue this run folder exactly where it stopped.", RUN)
INIT_FROM = (
    option("init_from", Path | None,
           "Fine-tune: start from this trained run's (or checkpoint's) weights, with a new "
           "optimizer and LR schedule; the model must match it tensor for tensor. Recorded "
           "in the run's config.", MODEL),
    option("init_weights", Literal["ema", "model"] | None,
           "Which weights of --init-from: ema (default, the sampled ones) | model (raw).",
           MODEL),
)  # fmt: skip
CHECKPOINT_EVERY_STEPS = option(
    "checkpoint_every_steps", int | None,
    "Also checkpoint every N steps (checkpoints/last and step-NNNNNNN), so a crash loses at "
    "most N steps (default 0: at epoch ends, and on Ctrl-C or SIGTERM).",
    RUN, "train.checkpoint_every_steps",
)  # fmt: skip
KEEP_CHECKPOINTS = option(
    "keep_checkpoints", int | None,
    "Numbered checkpoints (epoch-NNNN, step-NNNNNNN) kept besides last: the newest K "
    "(0 = last only; default: the recipe's, 2 for DDPMs and flows).",
    RUN, "train.keep_last_n",
)  # fmt: skip
TRAIN_RUNS_DIR = RUNS_DIR.but(panel=RUN)
LOGGERS = option(
    "loggers", list[str] | None,
    "Also log to tensorboard (RUN/tb), wandb (RUN/wandb, offline unless WANDB_MODE is set) or "
    "csv (RUN/metrics.csv); repeatable or comma separated (default: none).",
    RUN, None, "--logger",
)  # fmt: skip

PRESET = option(
    "preset", Preset,
    "tiny (tests) | small (2-core CPU: 9.7 min on the benchmark VM) | small-v1 (the earlier "
    "small: eps, uniform timesteps) | default (the DDPM paper's UNet shape, a GPU model; "
    "used when no preset is given).",
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

OPTIMISATION = (EPOCHS, BATCH_SIZE, GRAD_ACCUM, LR)
SCHEDULES = (LR_SCHEDULE, LR_FINAL, GRAD_CLIP)
DIFFUSION = (SCHEDULE, PREDICTION, NOISE_LEVELS)
COND_OPTIONS = (COND, COND_ROUTES, COND_DROP)
MACHINE_OPTIONS = (TRAIN_DATA_DIR, TRAIN_RUNS_DIR, NAME, CONFIG, DEVICE, PRECISION, TRAIN_SEED,
                   MAX_STEPS, LIMIT_DATA)  # fmt: skip
PREVIEWS = (SAMPLE_EVERY, EVAL_EVERY, SAMPLE_EVERY_STEPS, SNAPSHOT_EVERY_STEPS, EVAL_EVERY_STEPS,
            EVAL_N, KEEP_BEST, CLASSIFIER)  # fmt: skip
CHECKPOINTING = (CHECKPOINT_EVERY_STEPS, KEEP_CHECKPOINTS)
CLOSING = (*CHECKPOINTING, LOGGERS, TRAIN_COMPILE, PRINT_CONFIG)
"""Runs of options in the order every training command lists them."""
