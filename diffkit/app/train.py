"""Training requests resolved into run configs: ``diffkit train ...`` and ``reflow train``.

Each function takes what a command was given (the options that set the config, by dotted
key, and the ones with other roles: a VAE, a base model, ``--resume``) and returns a
:class:`Planned` run, every bad combination refused with a :class:`UsageError` before
anything is written. :func:`run` trains a planned run with its method's training
function (:mod:`diffkit.methods`).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffkit.app.report import QUIET, Reporter
from diffkit.errors import UsageError
from diffkit.runs.layout import RunDir

if TYPE_CHECKING:
    from diffkit.config.run import GenerativeRunConfig
    from diffkit.config.settings import Settings

RESUMABLE = {"train.epochs", "train.max_steps", "train.checkpoint_every_steps", "train.keep_last_n"}
"""The config keys that may accompany --resume: they extend a run, or say how often it
checkpoints, without changing what it computes."""


@dataclass(frozen=True)
class Planned:
    """A training run, resolved: its config, the run folder it continues (None: a new
    one), a latent model's autoencoder, and for a reflow its pairs and initial weights."""

    cfg: Any
    run: RunDir | None = None
    codec: Any = None
    pairs: Any = None
    init_from: Path | None = None

    @property
    def writes_to(self) -> Path | None:
        """The folder the run writes into, if it exists already (a resumed run's)."""
        return self.run.path if self.run is not None else None


@dataclass(frozen=True)
class ConfiguredRequest:
    """What a training command that builds its config from flags is given: ``flags`` by
    dotted config key, a ``config`` file under them, or a run to ``resume``; the command's
    own options follow (by keyword)."""

    flags: dict[str, Any]
    config: Path | None = None
    resume: Path | None = None


@dataclass(frozen=True)
class GenerativeRequest(ConfiguredRequest):
    """``train ddpm | rf | ldm``: the ``--cond`` options and the VAE or autoencoder of a
    latent model."""

    cond: str | None = None
    cond_routes: str | None = None
    cond_drop: float | None = None
    latent: Path | None = None
    init_from: Path | None = None
    init_weights: str | None = None

    def __post_init__(self) -> None:
        _cond_flags(self.cond, self.cond_routes, self.cond_drop)  # refused before any work
        if self.init_weights is not None and self.init_from is None:
            raise UsageError("--init-weights needs --init-from RUN")
        if self.init_from is not None and self.resume is not None:
            raise UsageError("--init-from starts a new run from trained weights; --resume "
                             "continues one: give one of them")  # fmt: skip


def resume_config(run_path: Path, flags: dict, kind: type):
    """The run folder and stored config of ``--resume RUN``, with only the RESUMABLE
    ``flags`` applied; any other flag, or a run of another method, is a UsageError."""
    from diffkit.config.resolve import validate
    from diffkit.data.prepared import with_manifest_shape
    from diffkit.methods.registry import METHODS

    run = RunDir(run_path)
    if not run.config.is_file() or not run.last_checkpoint.is_file():
        raise UsageError(
            f"cannot resume {run_path}: not a run folder with checkpoints/last.safetensors"
        )
    changed = sorted(k for k, v in flags.items() if v is not None and k not in RESUMABLE)
    if changed:
        raise UsageError(
            f"--resume continues a run as configured; cannot change {', '.join(changed)}"
        )
    try:
        stored = json.loads(run.config.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot resume {run_path}: unreadable config.json ({exc})") from None
    method = METHODS.get(stored.get("method")) if isinstance(stored, dict) else None
    if method is None or method.config is not kind:
        name = stored.get("method") if isinstance(stored, dict) else None
        how = f"resume it with `diffkit {method.command} --resume`" if method else "not a run"
        raise UsageError(f"{run_path} is a {name} run; {how}")
    stored.setdefault("train", {}).update(
        {k.split(".")[1]: v for k, v in flags.items() if k in RESUMABLE and v is not None}
    )
    if "data" in stored:  # a prepared folder re-prepared at another shape is refused
        stored["data"] = with_manifest_shape(stored["data"])
    return run, validate(kind, stored)


def latent_codec(checkpoint: Path, cfg: GenerativeRunConfig, device: str):
    """A latent model's autoencoder, from the ``vae.*`` tensors a checkpoint of it embeds
    (not the VAE folder); None for a pixel model."""
    from diffkit.methods.latent import codec_from_file
    from diffkit.runs.checkpoint import resolve_checkpoint
    from diffkit.training.hardware import resolve_device

    if cfg.latent is None:
        return None
    return codec_from_file(cfg.latent, resolve_checkpoint(checkpoint), resolve_device(device))


def generative(kind: type[GenerativeRunConfig], req: GenerativeRequest, device: str) -> Planned:
    """A DDPM or flow run (``kind``): fresh, on a VAE's latents, or resumed."""
    from diffkit.config.resolve import resolve_run_config

    flags = req.flags | _cond_flags(req.cond, req.cond_routes, req.cond_drop)
    if req.resume is not None:
        if req.config is not None or req.latent is not None:
            raise UsageError("--config and --vae/--latent cannot be combined with --resume")
        if req.cond is not None:
            raise UsageError("--resume continues a run as configured; cannot change --cond")
        run, cfg = resume_config(req.resume, flags, kind)
        return Planned(_with_classes(cfg, req.cond), run,
                       latent_codec(run.last_checkpoint, cfg, device))  # fmt: skip
    codec = None
    if req.latent is None:
        cfg = resolve_run_config(kind, flags, req.config)
    else:
        if flags.get("preset") is not None:
            raise UsageError("a latent model takes its preset from the VAE")
        if flags.get("data.dataset") is not None and not _pretrained_vae(req.latent):
            raise UsageError("a latent model takes its dataset from the VAE (--dataset is "
                             "for a pretrained autoencoder)")  # fmt: skip
        cfg, codec = _latent_config(req.latent, flags, req.config, device, kind)
    cfg = _with_classes(cfg, req.cond)
    if req.init_from is None:
        return Planned(cfg, codec=codec)
    return Planned(fine_tuned(cfg, req.init_from, req.init_weights or "ema"), codec=codec,
                   init_from=req.init_from)  # fmt: skip


def fine_tuned(cfg: GenerativeRunConfig, source: Path, weights: str) -> GenerativeRunConfig:
    """``cfg`` starting from the ``weights`` (``ema`` or ``model``) of the run or checkpoint
    ``source``, recorded in its ``init_from``: the tensors must be exactly the model's
    (a missing, extra or mis-shaped one is refused, named), and a latent model's source
    must have been trained on the same autoencoder's latents."""
    from diffkit.config.run import InitConfig
    from diffkit.methods.pipeline import check_weights
    from diffkit.nn.build import meta_model
    from diffkit.runs.checkpoint import read_checkpoint_header, resolve_checkpoint

    file = resolve_checkpoint(source)
    header = read_checkpoint_header(file)
    if not header.section(weights):
        raise UsageError(f"{source} holds no {weights} weights (not a training checkpoint "
                         "of a DDPM or flow)")  # fmt: skip
    check_weights(meta_model(cfg.model), header.section(weights), source, f"{weights}.")
    theirs = (header.config.get("latent") or {}).get("sha256")
    ours = cfg.latent.sha256 if cfg.latent is not None else None
    if theirs != ours:
        raise UsageError(f"{source} was trained on {_space(theirs)}, this run trains on "
                         f"{_space(ours)}")  # fmt: skip
    record = InitConfig(source=str(Path(source).resolve()), weights=weights)  # type: ignore[arg-type]
    return cfg.model_copy(update={"init_from": record})


def _space(vae_sha256: str | None) -> str:
    return "pixels" if vae_sha256 is None else f"the latents of the VAE {vae_sha256[:16]}"


def _cond_flags(cond: str | None, routes: str | None, drop: float | None) -> dict:
    """--cond/--cond-routes/--cond-drop as dotted config keys (num_classes is filled in from
    the dataset later, see :func:`_with_classes`)."""
    flags: dict = {"train.cond_drop": drop}
    if routes is not None:
        parts = tuple(r.strip() for r in routes.split(",") if r.strip())
        bad = [r for r in parts if r not in ("time", "input", "cross")]
        if bad or not parts:
            raise UsageError(f"--cond-routes: unknown {', '.join(bad) or '(none)'}; "
                             "use time, input, cross")  # fmt: skip
        if cond != "class":
            raise UsageError("--cond-routes needs --cond class")
        flags["model.cond_routes"] = parts
    if cond == "none":
        flags["model.num_classes"] = None
    return flags


def _with_classes(cfg: GenerativeRunConfig, cond: str | None) -> GenerativeRunConfig:
    """With ``--cond class``: the model's number of classes is the dataset's."""
    from diffkit.config.resolve import deep_merge, validate
    from diffkit.data.registry import class_names

    if cond != "class" or cfg.model.num_classes is not None:
        return cfg
    k = len(class_names(cfg.data.dataset))
    if k < 2:
        what = "one class" if k == 1 else "no class labels"
        raise UsageError(f"--cond class: dataset {cfg.data.dataset} has {what} (a folder is "
                         "labelled by its class subfolders)")  # fmt: skip
    return validate(type(cfg), deep_merge(cfg.model_dump(mode="json"),
                                          {"model": {"num_classes": k}}))  # fmt: skip


def _pretrained_vae(vae: Path) -> bool:
    """``hf:ORG/NAME`` or a folder holding a diffusers AutoencoderKL (not a diffkit VAE)."""
    from diffkit.external import HF_PREFIX

    if str(vae).startswith(HF_PREFIX):
        return True
    from diffkit.external.vae import is_autoencoder_folder

    return vae.is_dir() and is_autoencoder_folder(vae)


def _pretrained_codec(vae: Path, flags: dict, config: Path | None, device: str, kind):
    """A pretrained autoencoder, loaded for the images of the run's dataset (which the
    user names: a pretrained autoencoder has no dataset of its own)."""
    from diffkit.config.resolve import resolve_run_config
    from diffkit.data.registry import image_shape
    from diffkit.external.vae import load_pretrained_codec
    from diffkit.training.hardware import resolve_device

    if flags.get("data.dataset") is None and config is None:
        raise UsageError(f"{vae} is a pretrained autoencoder: name the data with --dataset")
    data_flags = {k: v for k, v in flags.items() if k.startswith("data.")}
    channels, size = image_shape(resolve_run_config(kind, data_flags, config).data)
    from diffkit.external import HF_PREFIX

    # a folder is recorded absolute: the run's checkpoints find it from any working folder
    source = str(vae) if str(vae).startswith(HF_PREFIX) else str(vae.resolve())
    return load_pretrained_codec(source, size, channels, resolve_device(device))


def _latent_config(
    vae: Path, flags: dict, config: Path | None, device: str, kind: type[GenerativeRunConfig]
):
    from diffkit.config.resolve import resolve_run_config
    from diffkit.methods.latent import latent_fixed_layer
    from diffkit.methods.registry import method_for
    from diffkit.methods.vae import load_codec
    from diffkit.training.hardware import resolve_device

    if _pretrained_vae(vae):
        codec = _pretrained_codec(vae, flags, config, device, kind)
    else:
        codec = load_codec(vae, resolve_device(device))
    unet_only = [k for k in flags if k.startswith("model.") and flags[k] is not None]
    if len(codec.latent_shape) == 1 and unet_only:
        names = ", ".join(k.split(".", 1)[1] for k in unet_only)
        raise UsageError(f"{vae} has flat latents, denoised by an MLP that takes the label "
                         f"through its time embedding; {names} applies to UNets")  # fmt: skip
    method = method_for(kind, latent=True).name
    cfg = resolve_run_config(kind, flags, config, fixed=latent_fixed_layer(codec, method),
                             fixed_by=f"the VAE {vae}")  # fmt: skip
    return cfg, codec


@dataclass(frozen=True)
class VAERequest(ConfiguredRequest):
    """``train vae``: ``net``, a spatial VAE's shape, beside the flags (or a run to resume)."""

    net: str | None = None

    def __post_init__(self) -> None:
        if self.net is not None and self.flags.get("model.latent") == "flat":
            raise UsageError(f"--net {self.net} is a spatial VAE; drop --latent flat")


def vae(req: VAERequest) -> Planned:
    """A VAE run, or one resumed; ``--net`` fills in its model fields under any flag given
    beside it."""
    from diffkit.config.resolve import resolve_run_config
    from diffkit.config.run import VAE_NETS, VAERunConfig

    flags = req.flags
    if req.resume is not None:
        if req.config is not None or req.net is not None:
            raise UsageError("--resume continues a run as configured; drop --config and --net")
        run, cfg = resume_config(req.resume, flags, VAERunConfig)
        return Planned(cfg, run)
    if req.net is not None:
        given = {k: v for k, v in flags.items() if v is not None}
        flags = {f"model.{k}": v for k, v in VAE_NETS[req.net].items()} | given
    return Planned(resolve_run_config(VAERunConfig, flags, req.config))


def classifier(flags: dict[str, Any], config: Path | None, resume: Path | None = None) -> Planned:
    """A feature-classifier run (its recipe is fixed; the flags shorten or rename it), or
    one resumed."""
    from diffkit.config.resolve import resolve_run_config
    from diffkit.config.run import ClassifierRunConfig

    if resume is None:
        return Planned(_heads_for_classes(resolve_run_config(ClassifierRunConfig, flags, config)))
    if config is not None:
        raise UsageError("--resume continues a run as configured; drop --config")
    run, cfg = resume_config(resume, flags, ClassifierRunConfig)
    return Planned(cfg, run)


def _heads_for_classes(cfg):
    """A classifier with one output per class of its dataset (a labelled folder or a
    prepared set may have any number); fewer than two classes cannot be classified."""
    from diffkit.config.resolve import deep_merge, validate
    from diffkit.data.registry import class_names

    k = len(class_names(cfg.data.dataset))
    if k < 2:
        raise UsageError(f"dataset {cfg.data.dataset} has {k or 'no'} class"
                         f"{'' if k == 1 else 'es'}; a classifier needs two or more")  # fmt: skip
    if k == cfg.model.num_classes:
        return cfg
    return validate(type(cfg), deep_merge(cfg.model_dump(mode="json"),
                                          {"model": {"num_classes": k}}))  # fmt: skip


def controlnet(
    flags: dict[str, Any],
    base: Path | None,
    *,
    embed_base: bool = False,
    config: Path | None = None,
    resume: Path | None = None,
) -> Planned:
    """A ControlNet run over the frozen ``base``, whose data it takes; or one resumed."""
    from diffkit.config.resolve import resolve_run_config
    from diffkit.config.run import ControlNetRunConfig
    from diffkit.methods.controlnet import base_reference
    from diffkit.methods.registry import method_of

    if resume is not None:
        if base is not None or config is not None or embed_base:
            raise UsageError("--resume continues a run as configured; drop --base, --config "
                             "and --embed-base")  # fmt: skip
        run, cfg = resume_config(resume, flags, ControlNetRunConfig)
        return Planned(cfg, run)
    if base is None:
        raise UsageError("--base RUN is required: the trained DDPM or flow to steer")
    ref = base_reference(base).model_copy(update={"embedded": embed_base})
    base_cfg = ref.config
    base_data = ("dataset", "image_size", "channels", "class_names")
    fixed = {
        "base": ref.model_dump(mode="json"),
        "data": {k: v for k, v in base_cfg["data"].items() if k in base_data},
    }
    samplers = _base_samplers(method_of(base_cfg.get("method")).family)
    if samplers:
        fixed["train"] = samplers
    return Planned(resolve_run_config(ControlNetRunConfig, flags, config, fixed=fixed,
                                      fixed_by=f"the base {base}"))  # fmt: skip


def _base_samplers(family: str | None) -> dict[str, str]:
    """The previews' and evaluations' samplers a ControlNet over a ``family`` model takes
    from its base: the family's default sampler where the config's default (a DDPM
    sampler) does not fit the family, as with a flow."""
    from diffkit.config.run import ControlNetRunConfig, TrainConfig
    from diffkit.samplers import registry

    assert family is not None  # the base is a generative run
    fits, recipe = registry.names(family), ControlNetRunConfig.BASE["train"]
    given = {k: recipe.get(k, TrainConfig.model_fields[k].default)
             for k in ("preview_sampler", "eval_sampler")}  # fmt: skip
    return {k: registry.default(family) for k, v in given.items() if v not in fits}


@dataclass(frozen=True)
class DenoiserRequest(ConfiguredRequest):
    """``train denoiser``: one noise level ``sigma`` or a range ``sigma_range`` (``A:B``),
    and ``net`` naming its UNet's fields."""

    sigma: float | None = None
    sigma_range: str | None = None
    net: str | None = None

    def __post_init__(self) -> None:
        self.levels()  # refused before any work

    def levels(self) -> tuple[float | None, float | None]:
        """(lowest, highest) noise level; None where the config decides."""
        if self.sigma is not None and self.sigma_range is not None:
            raise UsageError("give --sigma or --sigma-range, not both")
        low = high = self.sigma
        if self.sigma_range is not None:
            try:
                low, high = (float(v) for v in self.sigma_range.split(":"))
            except ValueError:
                raise UsageError(f"--sigma-range {self.sigma_range!r}: expected A:B, "
                                 "e.g. 0:1") from None  # fmt: skip
        for v in (low, high):
            if v is not None and (not math.isfinite(v) or v < 0):
                raise UsageError(f"--sigma/--sigma-range: {v} is not a noise level >= 0")
        return low, high


def denoiser(req: DenoiserRequest) -> Planned:
    """A single-step denoiser run, or one resumed."""
    from diffkit.config.resolve import resolve_run_config
    from diffkit.config.run import DENOISER_NETS, DenoiserRunConfig

    low, high = req.levels()
    flags = {"noise.sigma_min": low, "noise.sigma_max": high} | req.flags
    if req.net is not None:
        flags |= {f"model.{k}": v for k, v in DENOISER_NETS[req.net].items()}
    if req.resume is None:
        return Planned(resolve_run_config(DenoiserRunConfig, flags, req.config))
    if req.config is not None:
        raise UsageError("--resume continues a run as configured; drop --config")
    run, cfg = resume_config(req.resume, flags, DenoiserRunConfig)
    return Planned(cfg, run)


@dataclass(frozen=True)
class ReflowRequest:
    """``reflow train``: the pair set, where the weights start (``init_from``, else the
    flow that made the pairs; ``scratch``: random), ``distill`` k, ``overrides`` of the
    source's recipe by dotted key, or the reflow run to ``resume``."""

    pairs: Path | None = None
    init_from: Path | None = None
    scratch: bool = False
    distill: int | None = None
    overrides: dict[str, Any] | None = None
    resume: Path | None = None

    def __post_init__(self) -> None:
        if self.distill is not None and self.distill < 1:
            raise UsageError("--distill takes k >= 1")
        if self.scratch and self.init_from is not None:
            raise UsageError("--scratch and --init-from exclude each other")


def reflow(req: ReflowRequest, device: str, report: Reporter = QUIET) -> Planned:
    """The next rectified flow (or a distilled one) on a pair set, or a reflow resumed."""
    from diffkit.methods.reflow import load_pairs, reflow_config

    overrides = req.overrides or {}
    run = init = None
    if req.resume is not None:
        if req.pairs is not None or req.init_from is not None or req.distill is not None \
                or req.scratch:  # fmt: skip
            raise UsageError("--resume continues a reflow run as configured; give only "
                             "--epochs or --max-steps with it")  # fmt: skip
        run, cfg = _resumed_reflow(req.resume, overrides)
        pair_set = load_pairs(Path(cfg.reflow.pairs))
        if pair_set.digest != cfg.reflow.pairs_digest:
            raise UsageError(f"{cfg.reflow.pairs} changed since {req.resume} started")
    else:
        if req.pairs is None:
            raise UsageError("give the pair set (PAIRS) or --resume RUN")
        pair_set = load_pairs(req.pairs)
        init = None if req.scratch else (req.init_from or Path(pair_set.config.source))
        cfg = reflow_config(pair_set, distill_steps=req.distill,
                            init_from=None if init is None else str(init),
                            overrides=overrides)  # fmt: skip
    # A latent flow's autoencoder travels in its checkpoints: the run's own on resume.
    source = run.last_checkpoint if run is not None else Path(pair_set.config.source)
    codec = latent_codec(source, cfg, device)
    report.info(f"{len(pair_set.data)} pairs from {pair_set.config.source} "
                f"({pair_set.config.solver}-{pair_set.config.steps})")  # fmt: skip
    return Planned(cfg, run, codec, pairs=pair_set.data, init_from=init)


def _resumed_reflow(path: Path, overrides: dict):
    from diffkit.config.run import FlowRunConfig

    flags = {k: v for k, v in overrides.items() if k in RESUMABLE}
    extra = [k for k, v in overrides.items() if v is not None and k not in flags]
    if extra:
        raise UsageError(f"--resume cannot change {', '.join(sorted(extra))}")
    run, cfg = resume_config(path, flags, FlowRunConfig)
    if cfg.reflow is None:
        raise UsageError(f"{path} is not a reflow run; resume it with `diffkit train rf`")
    return run, cfg


Callbacks = tuple[Callable[[Any], None], Callable[[RunDir], None]]
Hooks = Callable[[bool], AbstractContextManager[Callbacks]]
"""``hooks(is_main)``: a context giving a method's ``(on_event, on_run_dir)`` callbacks
(a progress bar, loggers) on the main process or another one of a ``torchrun`` launch."""


@contextmanager
def no_hooks(is_main: bool) -> Iterator[Callbacks]:
    """Train silently: no progress, no loggers."""
    yield (lambda event: None), (lambda run: None)


_TRAINERS = {  # method -> its training function and which of run()'s inputs it takes
    "classifier": ("diffkit.methods.classifier", "train_classifier", ("resume",)),
    "vae": ("diffkit.methods.vae", "train_vae", ("resume",)),
    "controlnet": ("diffkit.methods.controlnet", "train_controlnet", ("resume", "classifier")),
    "denoiser": ("diffkit.methods.denoiser", "train_denoiser", ("resume",)),
}


def run(plan: Planned, settings: Settings, hooks: Hooks = no_hooks,
        classifier: Path | None = None) -> Any:  # fmt: skip
    """Train (or resume) the run of ``plan``, as ``diffkit train`` does; ``classifier`` is
    the feature network of in-training evaluation (None: the best qualified one). Returns
    what the method's training returns: ``(run folder, TrainResult)`` for a DDPM, flow,
    ControlNet or denoiser (None on a ``torchrun`` process other than rank 0), a
    :class:`~diffkit.methods.classifier.ClassifierResult` or
    :class:`~diffkit.methods.vae.VAEResult`."""
    if plan.cfg.method not in _TRAINERS:
        return _train_diffusion(plan, settings, hooks, classifier)
    module, name, takes = _TRAINERS[plan.cfg.method]
    train = getattr(importlib.import_module(module), name)
    given = {"resume": plan.run, "classifier": classifier}
    with hooks(True) as (on_event, on_run_dir):
        return train(plan.cfg, settings, on_event=on_event, on_run_dir=on_run_dir,
                     **{k: given[k] for k in takes})  # fmt: skip


def _train_diffusion(
    plan: Planned, settings: Settings, hooks: Hooks, classifier: Path | None
) -> tuple[RunDir, Any] | None:
    """A pixel or latent DDPM or flow, on every process of a ``torchrun`` launch (env
    ``RANK``, ...) or on this one."""
    from diffkit.methods.generative import train_generative
    from diffkit.training.distributed import destroy, dist_from_env, init_process_group
    from diffkit.training.hardware import resolve_device

    dist = dist_from_env()
    init_process_group(dist, resolve_device(settings.device, dist.local_rank))
    try:
        with hooks(dist.is_main) as (on_event, on_run_dir):
            run, result = train_generative(
                plan.cfg, settings, resume=plan.run, dist=dist, classifier=classifier,
                codec=plan.codec, pairs=plan.pairs, init_from=plan.init_from,
                on_event=on_event, on_run_dir=on_run_dir,
            )  # fmt: skip
    finally:
        destroy()
    return (run, result) if dist.is_main else None
