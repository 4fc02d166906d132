"""``diffkit train ...``: parse flags, resolve the config, hand over to the method."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from diffkit.cli import console
from diffkit.cli.errors import EXIT_FAILED, UsageError, handle_errors
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
    machine_settings,
)
from diffkit.cli.shared import (
    latent_codec,
    logger_names,
    report_stop,
    resume_config,
    show_config,
    stop_code,
    train_diffusion,
    train_hooks,
)
from diffkit.runs.layout import check_writable

if TYPE_CHECKING:
    from diffkit.config.run import GenerativeRunConfig

app = typer.Typer(
    help="Train a model; each run writes a self-describing run folder.", no_args_is_help=True
)


def _opt(help: str, *names: str) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, show_default=False)


Epochs = Annotated[int | None, _opt("Passes over the data.")]
BatchSize = Annotated[int | None, _opt("Images per step per process.")]
LR = Annotated[float | None, _opt("Peak learning rate.")]
Name = Annotated[str | None, _opt("Run name (folder suffix).")]
Precision = Annotated[
    Literal["auto", "fp32", "bf16", "fp16"] | None,
    _opt("auto = bf16 autocast where the hardware has native bf16."),
]
MaxSteps = Annotated[int | None, _opt("Stop after this many steps.")]
LimitData = Annotated[int | None, _opt("Train on the first N images only.")]
Schedule = Annotated[Literal["linear", "cosine"] | None, _opt("Noise schedule.")]
PredictionOpt = Annotated[
    Literal["eps", "x0", "v", "edm"] | None,
    _opt("What the network predicts (edm: Karras et al. 2022 preconditioning)."),
]
NoiseLevels = Annotated[
    Literal["uniform", "log_normal"] | None,
    _opt("Training noise levels: uniform timesteps, or EDM's log-normal sigma."),
]
SampleEvery = Annotated[int | None, _opt("Preview grid every N epochs (0 = never).")]
EvalEvery = Annotated[int | None, _opt("FID/KID of the EMA model every N epochs (0 = never).")]
SampleEverySteps = Annotated[int | None, _opt("Also a preview grid every N steps.")]
EvalEverySteps = Annotated[int | None, _opt("Also an evaluation every N steps.")]
SnapshotEverySteps = Annotated[
    int | None,
    _opt("Save the mean raw weights every N steps, so `diffkit ema` can rebuild the EMA of "
         "any decay afterwards (post-hoc EMA; 0 = never)."),
]  # fmt: skip
EvalN = Annotated[int | None, _opt("Images per in-training evaluation.")]
KeepBest = Annotated[
    bool | None, _opt("Keep checkpoints/best.safetensors by lowest FID.", "--keep-best")
]
Classifier = Annotated[
    Path | None,
    _opt(
        "Feature classifier for --eval-every, used even below the accuracy bar (with a "
        "warning); default: the most accurate qualified one for the dataset in RUNS_DIR."
    ),
]
Resume = Annotated[Path | None, _opt("Continue this run folder exactly where it stopped.")]
Cond = Annotated[
    Literal["none", "class"] | None,
    _opt("class: condition on the dataset's labels (classifier-free guidance).", "--cond"),
]
CondRoutes = Annotated[
    str | None,
    _opt("How the label enters the UNet, comma separated: time, input, cross (default time)."),
]
CondDrop = Annotated[
    float | None, _opt("Probability of training a label as the null class (default 0.1).")
]
LRSchedule = Annotated[
    Literal["cosine", "constant", "exponential"] | None,
    _opt(
        "LR after warm-up: cosine (default) or exponential decay to --lr-final x peak, or constant."
    ),
]
LRFinal = Annotated[float | None, _opt("LR at the end / peak LR (presets: 0.05 or 0.1).")]
GradClip = Annotated[float | None, _opt("Clip the gradient norm to this (default 1).")]


CONFIG_FLAGS = {
    "epochs": "train.epochs", "batch_size": "train.batch_size", "lr": "train.lr",
    "preset": "preset", "dataset": "data.dataset", "name": "name",
    "precision": "train.precision", "seed": "train.seed", "max_steps": "train.max_steps",
    "limit_data": "data.limit", "schedule": "diffusion.schedule",
    "prediction": "diffusion.prediction", "noise_levels": "diffusion.noise_levels",
    "time_sampling": "flow.time_sampling",
    "sample_every": "train.sample_every", "eval_every": "train.eval_every",
    "sample_every_steps": "train.sample_every_steps",
    "snapshot_every_steps": "train.snapshot_every_steps",
    "eval_every_steps": "train.eval_every_steps",
    "eval_n": "train.eval_n", "keep_best": "train.keep_best", "mid_block": "model.mid_block",
    "transformer_depth": "model.transformer_depth",
    "transformer_heads": "model.transformer_heads", "lr_schedule": "train.lr_schedule",
    "lr_final": "train.lr_final_factor", "grad_clip": "train.grad_clip",
    "grad_accum": "train.grad_accum",
}  # fmt: skip
"""The config key of each flag of `train ddpm | rf | ldm`, declared once for all three."""


def _config_flags(params: dict) -> dict:
    """A command's parameters as dotted config keys (None = not given); the flags with
    other roles (--cond, --vae, --resume, ...) are handled by the command itself."""
    return {key: params[name] for name, key in CONFIG_FLAGS.items() if name in params}


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


@app.command("ddpm")
@handle_errors
def ddpm(
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    lr: LR = None,
    lr_schedule: LRSchedule = None,
    lr_final: LRFinal = None,
    grad_clip: GradClip = None,
    preset: Annotated[
        Literal["tiny", "small", "small-v1", "default"] | None,
        _opt(
            "tiny (tests) | small (2-core CPU, ~11 min) | small-v1 (small before issue 20) | "
            "default (the seeds' GPU model; used when no preset is given)."
        ),
    ] = None,
    dataset: Annotated[str | None, _opt("mnist | fashion-mnist | cifar10 | folder:PATH.")] = None,
    cond: Cond = None,
    cond_routes: CondRoutes = None,
    cond_drop: CondDrop = None,
    mid_block: Annotated[
        Literal["resnet", "transformer"] | None,
        _opt("UNet middle: res-attention-res, or DiT blocks with AdaLN-Zero."),
    ] = None,
    transformer_depth: Annotated[int | None, _opt("DiT blocks in a transformer middle.")] = None,
    transformer_heads: Annotated[int | None, _opt("Attention heads of those blocks.")] = None,
    latent: Annotated[
        Path | None,
        _opt("Train on this VAE's or AutoencoderKL's latents (same as `train ldm --vae`)."),
    ] = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    name: Name = None,
    config: ConfigFile = None,
    device: Device = None,
    precision: Precision = None,
    seed: Seed = None,
    max_steps: MaxSteps = None,
    limit_data: LimitData = None,
    schedule: Schedule = None,
    prediction: PredictionOpt = None,
    noise_levels: NoiseLevels = None,
    sample_every: SampleEvery = None,
    eval_every: EvalEvery = None,
    sample_every_steps: SampleEverySteps = None,
    snapshot_every_steps: SnapshotEverySteps = None,
    eval_every_steps: EvalEverySteps = None,
    eval_n: EvalN = None,
    keep_best: KeepBest = None,
    classifier: Classifier = None,
    resume: Resume = None,
    loggers: Loggers = None,
    compile_net: Compile = None,
    print_config: PrintConfig = False,
) -> None:
    """Train a DDPM (UNet, eps/x0/v/EDM prediction, optional class conditioning) on pixels, or
    with --latent on a VAE's latents; writes a run folder."""
    flags = _config_flags(locals())
    flags |= _cond_flags(cond, cond_routes, cond_drop)
    settings = machine_settings(data_dir, runs_dir, device, compile_net)
    from diffkit.config.run import DDPMRunConfig

    _train_method(DDPMRunConfig, flags, settings, cond=cond, latent=latent, config=config,
                  print_config=print_config,
                  resume=resume, classifier=classifier,
                  loggers=logger_names(loggers))  # fmt: skip


def _train_method(
    kind: type[GenerativeRunConfig],
    flags: dict,
    settings,
    *,
    cond: str | None,
    latent: Path | None,
    config: Path | None,
    resume: Path | None,
    classifier: Path | None,
    loggers: tuple[str, ...],
    print_config: bool = False,
) -> None:
    """Resolve a DDPM or flow config (fresh, on a VAE's latents, or resumed) and train it."""
    from diffkit.config.resolve import resolve_run_config

    codec = None
    if resume is not None:
        if config is not None or latent is not None:
            raise UsageError("--config and --vae/--latent cannot be combined with --resume")
        if cond is not None:
            raise UsageError("--resume continues a run as configured; cannot change --cond")
        run, cfg = resume_config(resume, flags, kind)
        codec = latent_codec(run.last_checkpoint, cfg, settings.device)
    elif latent is not None:
        if flags.get("preset") is not None:
            raise UsageError("a latent model takes its preset from the VAE")
        if flags.get("data.dataset") is not None and not _pretrained_vae(latent):
            raise UsageError("a latent model takes its dataset from the VAE (--dataset is for "
                             "a pretrained autoencoder)")  # fmt: skip
        run = None
        cfg, codec = _latent_config(latent, flags, config, settings.device, kind)
    else:
        run, cfg = None, resolve_run_config(kind, flags, config)
    cfg = _with_classes(cfg, cond)
    show_config(cfg, print_config)
    check_writable(run.path if run is not None else settings.runs_dir)
    train_diffusion(cfg, run, settings, classifier, codec, loggers)


@app.command("rf")
@handle_errors
def rf(
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    lr: LR = None,
    lr_schedule: LRSchedule = None,
    lr_final: LRFinal = None,
    grad_clip: GradClip = None,
    preset: Annotated[
        Literal["tiny", "small", "small-v1", "default"] | None,
        _opt(
            "tiny (tests) | small (2-core CPU) | small-v1 (small before issue 20) | default "
            "(the seeds' GPU UNet)."
        ),
    ] = None,
    dataset: Annotated[str | None, _opt("mnist | fashion-mnist | cifar10 | folder:PATH.")] = None,
    vae: Annotated[
        Path | None,
        _opt(
            "Train on this VAE's latents (MLP or UNet velocity network), or a pretrained "
            "AutoencoderKL's (folder or hf:ORG/NAME, with --dataset)."
        ),
    ] = None,
    time_sampling: Annotated[
        Literal["uniform", "logit_normal"] | None,
        _opt("Training times: logit_normal (default; more weight mid-path) or uniform."),
    ] = None,
    cond: Cond = None,
    cond_routes: CondRoutes = None,
    cond_drop: CondDrop = None,
    mid_block: Annotated[
        Literal["resnet", "transformer"] | None,
        _opt("UNet middle: res-attention-res, or DiT blocks with AdaLN-Zero."),
    ] = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    name: Name = None,
    config: ConfigFile = None,
    device: Device = None,
    precision: Precision = None,
    seed: Seed = None,
    max_steps: MaxSteps = None,
    limit_data: LimitData = None,
    sample_every: SampleEvery = None,
    eval_every: EvalEvery = None,
    sample_every_steps: SampleEverySteps = None,
    snapshot_every_steps: SnapshotEverySteps = None,
    eval_every_steps: EvalEverySteps = None,
    eval_n: EvalN = None,
    keep_best: KeepBest = None,
    classifier: Classifier = None,
    resume: Resume = None,
    loggers: Loggers = None,
    compile_net: Compile = None,
    print_config: PrintConfig = False,
) -> None:
    """Train a rectified flow (noise at t=0 -> data at t=1, velocity target) on pixels, or
    with --vae on a VAE's latents; previews use 50 Euler steps. Writes a run folder."""
    flags = _config_flags(locals())
    flags |= _cond_flags(cond, cond_routes, cond_drop)
    settings = machine_settings(data_dir, runs_dir, device, compile_net)
    from diffkit.config.run import FlowRunConfig

    _train_method(FlowRunConfig, flags, settings, cond=cond, latent=vae, config=config,
                  print_config=print_config,
                  resume=resume, classifier=classifier,
                  loggers=logger_names(loggers))  # fmt: skip


@app.command("ldm")
def ldm(
    vae: Annotated[
        Path,
        typer.Option(
            help="A VAE run folder or vae.safetensors, or a pretrained diffusers "
            "AutoencoderKL: a folder or hf:ORG/NAME (local cache; the diffusers extra).",
        ),
    ],
    dataset: Annotated[
        str | None, _opt("With a pretrained autoencoder: the data (a diffkit VAE has its own).")
    ] = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    lr: LR = None,
    cond: Cond = None,
    cond_routes: CondRoutes = None,
    cond_drop: CondDrop = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    name: Name = None,
    config: ConfigFile = None,
    device: Device = None,
    precision: Precision = None,
    seed: Seed = None,
    max_steps: MaxSteps = None,
    limit_data: LimitData = None,
    schedule: Schedule = None,
    prediction: PredictionOpt = None,
    noise_levels: NoiseLevels = None,
    sample_every: SampleEvery = None,
    eval_every: EvalEvery = None,
    sample_every_steps: SampleEverySteps = None,
    snapshot_every_steps: SnapshotEverySteps = None,
    eval_every_steps: EvalEverySteps = None,
    eval_n: EvalN = None,
    keep_best: KeepBest = None,
    classifier: Classifier = None,
    loggers: Loggers = None,
    compile_net: Compile = None,
    print_config: PrintConfig = False,
) -> None:
    """Latent diffusion: a DDPM on a trained VAE's latents (MLP denoiser for flat latents,
    UNet for spatial ones), or on a pretrained diffusers AutoencoderKL's (with --dataset;
    latents cached). Samples are decoded by the autoencoder: a diffkit VAE's weights travel
    in the checkpoints, a pretrained one is referenced and its sha256 checked on load.
    Resume with `diffkit train ddpm --resume RUN`."""
    options = dict(locals())  # every option above, by name: the same as ddpm's
    ddpm(latent=options.pop("vae"), **options)


@app.command("classifier")
@handle_errors
def classifier(
    dataset: Annotated[
        str, typer.Option(help="mnist | fashion-mnist | cifar10 (labelled datasets).")
    ] = "mnist",
    epochs: Annotated[
        int | None, typer.Option(help="Passes over the data (recipe: 4).", show_default=False)
    ] = None,
    grad_accum: GradAccum = None,
    seed: Seed = None,
    limit_data: Annotated[
        int | None, typer.Option(help="Train on the first N images only.", show_default=False)
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps.", show_default=False)
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Run name (default: the dataset).", show_default=False)
    ] = None,
    config: ConfigFile = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    loggers: Loggers = None,
    compile_net: Compile = None,
    print_config: PrintConfig = False,
) -> None:
    """Train the CNN feature classifier used by `diffkit eval` (fixed recipe and seed)."""
    from diffkit.config.resolve import resolve_run_config
    from diffkit.config.run import ClassifierRunConfig
    from diffkit.methods.classifier import train_classifier

    flags = {
        "data.dataset": dataset,
        "train.epochs": epochs,
        "train.grad_accum": grad_accum,
        "train.seed": seed,
        "data.limit": limit_data,
        "train.max_steps": max_steps,
        "name": name or dataset.replace(":", "-").replace("/", "-")[:64],
    }
    names = logger_names(loggers)
    settings = machine_settings(data_dir, runs_dir, device, compile_net)
    cfg = resolve_run_config(ClassifierRunConfig, flags, config)
    show_config(cfg, print_config)
    check_writable(settings.runs_dir)
    with train_hooks(names) as (on_event, on_run_dir):
        res = train_classifier(cfg, settings, on_event=on_event, on_run_dir=on_run_dir)
    console.out.print(str(res.run.path))
    if res.train.reason == "interrupted":
        console.info("interrupted; no classifier written (train it again, ~minutes)")
        raise typer.Exit(stop_code(res.train))
    if res.train.reason == "non_finite":
        console.error(f"loss became NaN/inf at step {res.train.step}; no classifier written")
        raise typer.Exit(EXIT_FAILED)
    console.info(
        f"test accuracy {100 * res.test_accuracy:.2f} % after {res.train.step} steps "
        f"({res.train.elapsed:.0f} s, {res.train.images_per_sec:.0f} img/s); "
        f"sha256 {res.digest[:16]}"
    )


@app.command("vae")
@handle_errors
def vae(
    dataset: Annotated[str | None, _opt("mnist | fashion-mnist | cifar10 | folder:PATH.")] = None,
    latent: Annotated[
        Literal["flat", "spatial"] | None,
        _opt(
            "flat: the seeds' conv VAE, a vector latent (default); spatial: "
            "latent-channels x H/4 x W/4 (by default) with attention, for UNet denoisers."
        ),
    ] = None,
    net: Annotated[
        Literal["small", "kl-f4"] | None,
        _opt(
            "A spatial VAE: small (the default, 32-64 channels, CPU minutes) | kl-f4 (the "
            "seeds' 002 shape, LDM's KL-f4: 128-256-512 channels, 2 blocks per level, "
            "latent 3 x H/4 x W/4; a GPU net)."
        ),
    ] = None,
    latent_dim: Annotated[int | None, _opt("Flat latent size (default 64).")] = None,
    latent_channels: Annotated[int | None, _opt("Spatial latent channels (default 4).")] = None,
    kl_weight: Annotated[float | None, _opt("Weight of the KL term, beta (default 1).")] = None,
    recon_loss: Annotated[
        Literal["bce", "mse"] | None, _opt("bce (Bernoulli, default) | mse (Gaussian).")
    ] = None,
    lpips_weight: Annotated[
        float | None,
        _opt(
            "Weight of LPIPS(image, reconstruction) in the loss, counted per pixel like "
            "the reconstruction term (default 0: none; needs the lpips extra)."
        ),
    ] = None,
    lpips_net: Annotated[
        Literal["alex", "vgg"] | None, _opt("LPIPS backbone of --lpips-weight (default alex).")
    ] = None,
    lpips_weights: Annotated[
        Path | None,
        _opt(
            "torchvision's ImageNet backbone .pth for --lpips-weight (env "
            "DIFFKIT_LPIPS_WEIGHTS; default: torch hub cache). Never downloaded."
        ),
    ] = None,
    epochs: Annotated[int | None, _opt("Passes over the data (recipe: 10).")] = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    lr: LR = None,
    seed: Seed = None,
    limit_data: LimitData = None,
    max_steps: MaxSteps = None,
    sample_every: Annotated[
        int | None, _opt("Reconstruction grid every N epochs (0 = never).")
    ] = None,
    name: Name = None,
    config: ConfigFile = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    device: Device = None,
    loggers: Loggers = None,
    compile_net: Compile = None,
    print_config: PrintConfig = False,
) -> None:
    """Train the VAE of latent diffusion; writes vae.safetensors with the latent scaling."""
    from diffkit.config.resolve import resolve_run_config
    from diffkit.config.run import VAE_NETS, VAERunConfig
    from diffkit.methods.vae import train_vae

    flags = {
        "data.dataset": dataset,
        "model.latent": latent,
        "model.latent_dim": latent_dim,
        "model.latent_channels": latent_channels,
        "kl_weight": kl_weight,
        "recon_loss": recon_loss,
        "lpips_weight": lpips_weight,
        "lpips_net": lpips_net,
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "train.grad_accum": grad_accum,
        "train.lr": lr,
        "train.seed": seed,
        "data.limit": limit_data,
        "train.max_steps": max_steps,
        "train.sample_every": sample_every,
        "name": name,
    }
    if net is not None:  # the net's model fields, under any flag given beside it
        if latent == "flat":
            raise UsageError(f"--net {net} is a spatial VAE; drop --latent flat")
        given = {k: v for k, v in flags.items() if v is not None}
        flags = {f"model.{k}": v for k, v in VAE_NETS[net].items()} | given
    names = logger_names(loggers)
    settings = machine_settings(data_dir, runs_dir, device, compile_net)
    if lpips_weights is not None:
        settings = settings.model_copy(update={"lpips_weights": lpips_weights})
    cfg = resolve_run_config(VAERunConfig, flags, config)
    show_config(cfg, print_config)
    check_writable(settings.runs_dir)
    with train_hooks(names) as (on_event, on_run_dir):
        res = train_vae(cfg, settings, on_event=on_event, on_run_dir=on_run_dir)
    console.out.print(str(res.run.path))
    if res.train.reason == "interrupted":
        console.info("interrupted; no vae.safetensors written (train it again)")
        raise typer.Exit(stop_code(res.train))
    if res.train.reason == "non_finite":
        console.error(f"loss became NaN/inf at step {res.train.step}; no vae.safetensors written")
        raise typer.Exit(EXIT_FAILED)
    lpips = "" if res.lpips is None else f", LPIPS {res.lpips:.4f}"
    console.info(
        f"recon MSE {res.recon_mse:.4f}, KL {res.kl:.2f} nats/image{lpips}, latent shift "
        f"{res.shift:+.4f} scale {res.scale:.4f} after {res.train.step} steps "
        f"({res.train.elapsed:.0f} s, {res.train.images_per_sec:.0f} img/s)"
    )


@app.command("controlnet")
@handle_errors
def controlnet(
    base: Annotated[
        Path | None,
        _opt(
            "The frozen DDPM or flow (run folder or checkpoint, UNet) to steer; required "
            "unless --resume."
        ),
    ] = None,
    hint: Annotated[
        Literal["canny", "sobel"] | None, _opt("Edge map made from each image (default canny).")
    ] = None,
    canny_low: Annotated[float | None, _opt("Canny weak-edge threshold (default 0.1).")] = None,
    canny_high: Annotated[float | None, _opt("Canny strong-edge threshold (default 0.2).")] = None,
    canny_sigma: Annotated[float | None, _opt("Canny smoothing sigma (default 1).")] = None,
    objective: Annotated[
        Literal["base", "recon"] | None,
        _opt(
            "base: the base's own loss with the hint (default); recon: the seeds' "
            "baseline, L1 reconstruction from a blank input."
        ),
    ] = None,
    cond_drop: Annotated[
        float | None, _opt("Probability of training a label as the null class (default 0.5).")
    ] = None,
    unlock_decoder: Annotated[
        bool | None, _opt("Also train the base UNet's decoder (a copy of it).", "--unlock-decoder")
    ] = None,
    embed_base: Annotated[
        bool,
        typer.Option(
            "--embed-base", help="Store the base's weights in every checkpoint (self-contained)."
        ),
    ] = False,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    lr: LR = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    name: Name = None,
    config: ConfigFile = None,
    device: Device = None,
    precision: Precision = None,
    seed: Seed = None,
    max_steps: MaxSteps = None,
    limit_data: LimitData = None,
    sample_every: SampleEvery = None,
    eval_every: EvalEvery = None,
    sample_every_steps: SampleEverySteps = None,
    eval_every_steps: EvalEverySteps = None,
    eval_n: EvalN = None,
    keep_best: KeepBest = None,
    classifier: Classifier = None,
    resume: Resume = None,
    loggers: Loggers = None,
    compile_net: Compile = None,
    print_config: PrintConfig = False,
) -> None:
    """Train a ControlNet on edge maps over a frozen base model; the checkpoint holds the
    ControlNet and the base's path and sha256 (checked on every load)."""
    from diffkit.config.resolve import resolve_run_config
    from diffkit.config.run import ControlNetRunConfig
    from diffkit.methods.controlnet import base_reference, train_controlnet

    flags = {
        "hint.kind": hint, "hint.low": canny_low, "hint.high": canny_high,
        "hint.sigma": canny_sigma, "objective": objective, "train.cond_drop": cond_drop,
        "unlock_decoder": unlock_decoder, "train.epochs": epochs,
        "train.batch_size": batch_size, "train.grad_accum": grad_accum, "train.lr": lr,
        "name": name,
        "train.precision": precision, "train.seed": seed, "train.max_steps": max_steps,
        "data.limit": limit_data, "train.sample_every": sample_every,
        "train.eval_every": eval_every, "train.eval_n": eval_n, "train.keep_best": keep_best,
        "train.sample_every_steps": sample_every_steps,
        "train.eval_every_steps": eval_every_steps,
    }  # fmt: skip
    names = logger_names(loggers)
    settings = machine_settings(data_dir, runs_dir, device, compile_net)
    if resume is not None:
        if base is not None or config is not None or embed_base:
            raise UsageError("--resume continues a run as configured; drop --base, --config "
                             "and --embed-base")  # fmt: skip
        run, cfg = resume_config(resume, flags, ControlNetRunConfig)
    elif base is None:
        raise UsageError("--base RUN is required: the trained DDPM or flow to steer")
    else:
        run = None
        ref = base_reference(base).model_copy(update={"embedded": embed_base})
        base_cfg = ref.config
        base_data = ("dataset", "image_size", "channels", "class_names")
        fixed = {
            "base": ref.model_dump(mode="json"),
            "data": {k: v for k, v in base_cfg["data"].items() if k in base_data},
        }
        if base_cfg.get("method") == "rf":  # previews and evaluation with the flow's solver
            fixed["train"] = {"preview_sampler": "euler", "eval_sampler": "euler"}
        cfg = resolve_run_config(ControlNetRunConfig, flags, config, fixed=fixed,
                                 fixed_by=f"the base {base}")  # fmt: skip
    show_config(cfg, print_config)
    check_writable(run.path if run is not None else settings.runs_dir)
    with train_hooks(names) as (on_event, on_run_dir):
        run, result = train_controlnet(cfg, settings, resume=run, classifier=classifier,
                                       on_event=on_event, on_run_dir=on_run_dir)  # fmt: skip
    report_stop(run, result)


@app.command("denoiser")
@handle_errors
def denoiser(
    sigma: Annotated[
        float | None, _opt("Train at this one noise level (images in [0, 1]; default 0.5).")
    ] = None,
    sigma_range: Annotated[
        str | None, _opt("Train on sigma ~ U[A, B], given as A:B (e.g. 0:1).")
    ] = None,
    sigma_input: Annotated[
        bool | None, _opt("The network sees sigma (through its time input).", "--sigma-input")
    ] = None,
    target: Annotated[
        Literal["clean", "noisy"] | None,
        _opt("clean (default), or noisy: a second noisy copy (Noise2Noise)."),
    ] = None,
    pure_noise: Annotated[
        bool | None,
        _opt(
            "Train on pure noise inputs, no image (the seeds' 1.2.3: learns the mean).",
            "--pure-noise",
        ),
    ] = None,
    net: Annotated[
        Literal["small", "seeds"] | None,
        _opt("small (the small preset's UNet, CPU) | seeds (hidden 128 at 28 px, a GPU net)."),
    ] = None,
    dataset: Annotated[str | None, _opt("mnist | fashion-mnist | cifar10 | folder:PATH.")] = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    grad_accum: GradAccum = None,
    lr: LR = None,
    data_dir: DataDir = None,
    runs_dir: RunsDir = None,
    name: Name = None,
    config: ConfigFile = None,
    device: Device = None,
    precision: Precision = None,
    seed: Seed = None,
    max_steps: MaxSteps = None,
    limit_data: LimitData = None,
    sample_every: SampleEvery = None,
    sample_every_steps: SampleEverySteps = None,
    resume: Resume = None,
    loggers: Loggers = None,
    compile_net: Compile = None,
    print_config: PrintConfig = False,
) -> None:
    """Train a single-step denoiser (the seeds' Part B): MSE from x + sigma eps to x, at one
    sigma or a range, optionally told sigma, or with noisy targets (Noise2Noise)."""
    import math

    from diffkit.config.resolve import resolve_run_config
    from diffkit.config.run import DENOISER_NETS, DenoiserRunConfig
    from diffkit.methods.denoiser import train_denoiser

    if sigma is not None and sigma_range is not None:
        raise UsageError("give --sigma or --sigma-range, not both")
    low = high = sigma
    if sigma_range is not None:
        try:
            low, high = (float(v) for v in sigma_range.split(":"))
        except ValueError:
            raise UsageError(f"--sigma-range {sigma_range!r}: expected A:B, e.g. 0:1") from None
    for v in (low, high):
        if v is not None and (not math.isfinite(v) or v < 0):
            raise UsageError(f"--sigma/--sigma-range: {v} is not a noise level >= 0")
    flags = {
        "noise.sigma_min": low, "noise.sigma_max": high, "noise.sigma_input": sigma_input,
        "noise.target": target, "noise.pure_noise": pure_noise, "data.dataset": dataset,
        "train.epochs": epochs,
        "train.batch_size": batch_size, "train.grad_accum": grad_accum, "train.lr": lr,
        "name": name,
        "train.precision": precision, "train.seed": seed, "train.max_steps": max_steps,
        "data.limit": limit_data, "train.sample_every": sample_every,
        "train.sample_every_steps": sample_every_steps, "net": net,
    }  # fmt: skip
    if net is not None:
        flags |= {f"model.{k}": v for k, v in DENOISER_NETS[net].items()}
    names = logger_names(loggers)
    settings = machine_settings(data_dir, runs_dir, device, compile_net)
    if resume is not None:
        if config is not None:
            raise UsageError("--resume continues a run as configured; drop --config")
        run, cfg = resume_config(resume, flags, DenoiserRunConfig)
    else:
        run, cfg = None, resolve_run_config(DenoiserRunConfig, flags, config)
    show_config(cfg, print_config)
    check_writable(run.path if run is not None else settings.runs_dir)
    with train_hooks(names) as (on_event, on_run_dir):
        run, result = train_denoiser(cfg, settings, resume=run, on_event=on_event,
                                     on_run_dir=on_run_dir)  # fmt: skip
    report_stop(run, result)
