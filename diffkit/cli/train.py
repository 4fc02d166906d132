"""``diffkit train ...``: parse flags, resolve the config, hand over to the method."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer

from diffkit.app import train as plans
from diffkit.cli import console
from diffkit.cli.errors import EXIT_FAILED, handle_errors
from diffkit.cli.flags import (
    BATCH_SIZE,
    CLOSING,
    COND_DROP,
    COND_OPTIONS,
    CONFIG,
    DATASET,
    DEVICE,
    DIFFUSION,
    EPOCHS,
    GRAD_ACCUM,
    INIT_FROM,
    LIMIT_DATA,
    LR,
    MACHINE_OPTIONS,
    MAX_STEPS,
    MID_BLOCK,
    MODEL,
    NAME,
    OPTIMISATION,
    OPTIONS,
    PRESET,
    PREVIEWS,
    REQUIRED,
    RESUME,
    SAMPLE_EVERY,
    SAMPLE_EVERY_STEPS,
    SCHEDULES,
    SNAPSHOT_EVERY_STEPS,
    TIME_SAMPLING,
    TRAIN_DATA_DIR,
    TRAIN_RUNS_DIR,
    TRAIN_SEED,
    TRANSFORMER_DEPTH,
    TRANSFORMER_HEADS,
    Flag,
    config_flags,
    option,
    takes,
)
from diffkit.cli.options import settings_of
from diffkit.cli.shared import (
    begin,
    logger_names,
    report_stop,
    stop_code,
    train_diffusion,
    train_hooks,
)

app = typer.Typer(
    help="Train a model; each run writes a self-describing run folder.", no_args_is_help=True
)

DDPM = (
    *OPTIMISATION, *SCHEDULES, PRESET, DATASET, *COND_OPTIONS, MID_BLOCK, TRANSFORMER_DEPTH,
    TRANSFORMER_HEADS,
    option("latent", Path | None,
           "Train on this VAE's or AutoencoderKL's latents (same as `train ldm --vae`).", MODEL),
    *MACHINE_OPTIONS, *DIFFUSION, *PREVIEWS, *INIT_FROM, RESUME, *CLOSING,
)  # fmt: skip
RF = (
    *OPTIMISATION, *SCHEDULES,
    PRESET.but("tiny (tests) | small (2-core CPU) | small-v1 (the earlier small recipe) | "
               "default (a GPU UNet)."),
    DATASET,
    option("vae", Path | None, "Train on this VAE's latents (MLP or UNet velocity network), or a "
           "pretrained AutoencoderKL's (folder or hf:ORG/NAME, with --dataset).", MODEL),
    TIME_SAMPLING, *COND_OPTIONS, MID_BLOCK, *MACHINE_OPTIONS, *PREVIEWS, *INIT_FROM, RESUME,
    *CLOSING,
)  # fmt: skip
LDM = (
    Flag("vae", Path, typer.Option(
        help="A VAE run folder or vae.safetensors, or a pretrained diffusers "
        "AutoencoderKL: a folder or hf:ORG/NAME (local cache; the diffusers extra)."),
        MODEL, default=REQUIRED),
    DATASET.but("With a pretrained autoencoder: the data (a diffkit VAE has its own)."),
    *OPTIMISATION, *COND_OPTIONS, *MACHINE_OPTIONS, *DIFFUSION, *PREVIEWS, *INIT_FROM,
    *CLOSING,
)  # fmt: skip


@app.command("ddpm")
@handle_errors
@takes(DDPM)
def ddpm(**o: Any) -> None:
    """Train a DDPM (UNet, eps/x0/v/EDM prediction, optional class conditioning) on pixels, or
    with --latent on a VAE's latents; writes a run folder."""
    _generative("ddpm", DDPM, o, o["latent"])


@app.command("rf")
@handle_errors
@takes(RF)
def rf(**o: Any) -> None:
    """Train a rectified flow (noise at t=0 -> data at t=1, velocity target) on pixels, or
    with --vae on a VAE's latents; previews use 50 Euler steps. Writes a run folder."""
    _generative("rf", RF, o, o["vae"])


@app.command("ldm")
@handle_errors
@takes(LDM)
def ldm(**o: Any) -> None:
    """Latent diffusion: a DDPM on a trained VAE's latents (MLP denoiser for flat latents,
    UNet for spatial ones), or on a pretrained diffusers AutoencoderKL's (with --dataset;
    latents cached). Samples are decoded by the autoencoder: a diffkit VAE's weights travel
    in the checkpoints, a pretrained one is referenced and its sha256 checked on load.
    Resume with `diffkit train ddpm --resume RUN`."""
    _generative("ddpm", LDM, o | {"resume": None}, o["vae"])


def _generative(method: str, flags: tuple[Flag, ...], o: dict[str, Any], latent: Path | None):
    """``train ddpm | rf | ldm``: the DDPM or flow ``method`` (on ``latent``, a VAE's)."""
    request = plans.GenerativeRequest(
        config_flags(flags, o), cond=o["cond"], cond_routes=o["cond_routes"],
        cond_drop=o["cond_drop"], latent=latent, config=o["config"], resume=o["resume"],
        init_from=o["init_from"], init_weights=o["init_weights"],
    )  # fmt: skip
    settings = settings_of(o)
    loggers = logger_names(o["loggers"])
    from diffkit.methods.registry import METHODS

    plan = plans.generative(METHODS[method].config, request, settings.device)
    begin(plan, settings, o["print_config"])
    train_diffusion(plan, settings, o["classifier"], loggers)


CLASSIFIER = (
    DATASET.but("mnist (default) | fashion-mnist | cifar10 | a labelled folder:PATH or "
                "prepared:DIR."),
    EPOCHS.but("Passes over the data (recipe: 4)."), GRAD_ACCUM, TRAIN_SEED, LIMIT_DATA,
    MAX_STEPS, NAME.but("Run name (default: the dataset).", key=None), CONFIG, TRAIN_DATA_DIR,
    TRAIN_RUNS_DIR, DEVICE, RESUME, *CLOSING,
)  # fmt: skip


@app.command("classifier")
@handle_errors
@takes(CLASSIFIER)
def classifier(**o: Any) -> None:
    """Train the CNN feature classifier used by `diffkit eval` (fixed recipe and seed).
    Resume with `diffkit train classifier --resume RUN`."""
    flags = config_flags(CLASSIFIER, o)
    if o["resume"] is None:
        dataset = o["dataset"] or "mnist"
        name = o["name"] or dataset.replace(":", "-").replace("/", "-")[:64]
        flags |= {"data.dataset": dataset, "name": name}
    elif o["name"] is not None:
        flags["name"] = o["name"]  # refused: a resumed run keeps its name
    loggers = logger_names(o["loggers"])
    settings = settings_of(o)
    plan = plans.classifier(flags, o["config"], o["resume"])
    res = _train(plan, settings, o, loggers)
    _report_end(res, "no classifier written yet", f"; resume with --resume {res.run.path}")
    console.info(
        f"test accuracy {100 * res.test_accuracy:.2f} % after {res.train.step} steps "
        f"({res.train.elapsed:.0f} s, {res.train.images_per_sec:.0f} img/s); "
        f"sha256 {res.digest[:16]}"
    )


def _report_end(res, nothing: str, again: str) -> None:
    """Print the run folder; exit as the training ended unless it finished (a VAE or a
    classifier writes its file only then: ``nothing`` says so)."""
    console.out.print(str(res.run.path))
    if res.train.reason == "interrupted":
        console.info(f"interrupted; {nothing}{again}")
        raise typer.Exit(stop_code(res.train))
    if res.train.reason == "non_finite":
        console.error(f"loss became NaN/inf at step {res.train.step}; {nothing}")
        raise typer.Exit(EXIT_FAILED)


VAE = (
    DATASET,
    option("latent", Literal["flat", "spatial"] | None,
           "flat: a conv VAE with a vector latent (default); spatial: "
           "latent-channels x H/4 x W/4 (by default) with attention, for UNet denoisers.",
           MODEL, "model.latent"),
    option("net", Literal["small", "kl-f4"] | None,
           "A spatial VAE: small (the default, 32-64 channels, CPU minutes) | kl-f4 (latent "
           "diffusion's KL-f4, Rombach et al. 2022: 128-256-512 channels, 2 blocks per level, "
           "latent 3 x H/4 x W/4; a GPU net).", MODEL),
    option("latent_dim", int | None, "Flat latent size (default 64).", MODEL,
           "model.latent_dim"),
    option("latent_channels", int | None, "Spatial latent channels (default 4).", MODEL,
           "model.latent_channels"),
    option("kl_weight", float | None, "Weight of the KL term, beta (default 1).", MODEL,
           "kl_weight"),
    option("recon_loss", Literal["bce", "mse"] | None, "bce (Bernoulli, default) | mse "
           "(Gaussian).", MODEL, "recon_loss"),
    option("lpips_weight", float | None,
           "Weight of LPIPS(image, reconstruction) in the loss, counted per pixel like "
           "the reconstruction term (default 0: none; needs the lpips extra).", MODEL,
           "lpips_weight"),
    option("lpips_net", Literal["alex", "vgg"] | None,
           "LPIPS backbone of --lpips-weight (default alex).", MODEL, "lpips_net"),
    option("lpips_weights", Path | None,
           "torchvision's ImageNet backbone .pth for --lpips-weight (env "
           "DIFFKIT_LPIPS_WEIGHTS; default: torch hub cache). Never downloaded.", MODEL),
    EPOCHS.but("Passes over the data (recipe: 10)."), BATCH_SIZE, GRAD_ACCUM, LR, TRAIN_SEED,
    LIMIT_DATA, MAX_STEPS, SAMPLE_EVERY.but("Reconstruction grid every N epochs (0 = never)."),
    NAME, CONFIG, TRAIN_DATA_DIR, TRAIN_RUNS_DIR, DEVICE, RESUME, *CLOSING,
)  # fmt: skip


@app.command("vae")
@handle_errors
@takes(VAE)
def vae(**o: Any) -> None:
    """Train the VAE of latent diffusion; writes vae.safetensors with the latent scaling.
    Resume with `diffkit train vae --resume RUN`."""
    request = plans.VAERequest(config_flags(VAE, o), config=o["config"], resume=o["resume"],
                               net=o["net"])  # fmt: skip
    loggers = logger_names(o["loggers"])
    settings = settings_of(o)
    if o["lpips_weights"] is not None:
        settings = settings.model_copy(update={"lpips_weights": o["lpips_weights"]})
    res = _train(plans.vae(request), settings, o, loggers)
    _report_end(res, "no vae.safetensors written yet", f"; resume with --resume {res.run.path}")
    lpips = "" if res.lpips is None else f", LPIPS {res.lpips:.4f}"
    console.info(
        f"recon MSE {res.recon_mse:.4f}, KL {res.kl:.2f} nats/image{lpips}, latent shift "
        f"{res.shift:+.4f} scale {res.scale:.4f} after {res.train.step} steps "
        f"({res.train.elapsed:.0f} s, {res.train.images_per_sec:.0f} img/s)"
    )


def _edges(name: str, help: str, key: str) -> Flag:
    """A setting of the edge maps a ControlNet trains on (the config's ``hint.KEY``)."""
    return option(name, float | None, help, OPTIONS, f"hint.{key}")


CONTROLNET = (
    option("base", Path | None, "The frozen DDPM or flow (run folder or checkpoint, UNet) to "
           "steer; required unless --resume.", MODEL),
    option("hint", Literal["canny", "sobel"] | None,
           "Edge map made from each image (default canny).", OPTIONS, "hint.kind"),
    _edges("canny_low", "Canny weak-edge threshold (default 0.1).", "low"),
    _edges("canny_high", "Canny strong-edge threshold (default 0.2).", "high"),
    _edges("canny_sigma", "Canny smoothing sigma (default 1).", "sigma"),
    option("objective", Literal["base", "recon"] | None,
           "base: the base's own loss with the hint (default); recon: a "
           "baseline, L1 reconstruction from a blank input.", MODEL, "objective"),
    COND_DROP.but("Probability of training a label as the null class (default 0.5)."),
    option("unlock_decoder", bool | None, "Also train the base UNet's decoder (a copy of it).",
           MODEL, "unlock_decoder", "--unlock-decoder"),
    Flag("embed_base", bool, typer.Option(
        "--embed-base", help="Store the base's weights in every checkpoint (self-contained)."),
        MODEL, default=False),
    *OPTIMISATION, *MACHINE_OPTIONS, *(f for f in PREVIEWS if f is not SNAPSHOT_EVERY_STEPS),
    RESUME, *CLOSING,
)  # fmt: skip


@app.command("controlnet")
@handle_errors
@takes(CONTROLNET)
def controlnet(**o: Any) -> None:
    """Train a ControlNet on edge maps over a frozen base model; the checkpoint holds the
    ControlNet and the base's path and sha256 (checked on every load)."""
    loggers = logger_names(o["loggers"])
    settings = settings_of(o)
    plan = plans.controlnet(config_flags(CONTROLNET, o), o["base"], embed_base=o["embed_base"],
                            config=o["config"], resume=o["resume"])  # fmt: skip
    report_stop(*_train(plan, settings, o, loggers, o["classifier"]))


DENOISER = (
    option("sigma", float | None,
           "Train at this one noise level (images in [0, 1]; default 0.5).", OPTIONS),
    option("sigma_range", str | None, "Train on sigma ~ U[A, B], given as A:B (e.g. 0:1).",
           OPTIONS),
    option("sigma_input", bool | None, "The network sees sigma (through its time input).",
           OPTIONS, "noise.sigma_input", "--sigma-input"),
    option("target", Literal["clean", "noisy"] | None,
           "clean (default), or noisy: a second noisy copy (Noise2Noise).", OPTIONS,
           "noise.target"),
    option("pure_noise", bool | None,
           "Train on pure noise inputs, no image (the MSE-optimal answer is the mean image).",
           OPTIONS, "noise.pure_noise", "--pure-noise"),
    option("net", Literal["small", "wide"] | None,
           "small (the small preset's UNet, CPU) | wide (hidden 128 at 28 px, a GPU net).",
           MODEL, "net"),
    DATASET, *OPTIMISATION, *MACHINE_OPTIONS, SAMPLE_EVERY, SAMPLE_EVERY_STEPS, RESUME, *CLOSING,
)  # fmt: skip


@app.command("denoiser")
@handle_errors
@takes(DENOISER)
def denoiser(**o: Any) -> None:
    """Train a single-step denoising UNet: MSE from x + sigma eps to x, at one
    sigma or a range, optionally told sigma, or with noisy targets (Noise2Noise)."""
    request = plans.DenoiserRequest(
        config_flags(DENOISER, o), sigma=o["sigma"], sigma_range=o["sigma_range"], net=o["net"],
        config=o["config"], resume=o["resume"],
    )  # fmt: skip
    loggers = logger_names(o["loggers"])
    settings = settings_of(o)
    plan = plans.denoiser(request)
    report_stop(*_train(plan, settings, o, loggers))


def _train(plan: plans.Planned, settings, o: dict[str, Any], loggers: tuple[str, ...],
           classifier: Path | None = None):  # fmt: skip
    """``--print-config`` or the check that the run's folder is writable, then the run with
    the progress bar and ``loggers``; what its method's training returns."""
    begin(plan, settings, o["print_config"])
    return plans.run(plan, settings, lambda main: train_hooks(loggers, enabled=main), classifier)
