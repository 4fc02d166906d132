"""Experiment configs: everything that defines a run and is copied into its folder."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import AfterValidator, Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from diffkit.config.model import ClassifierNetConfig, Frozen, MLPConfig, UNetConfig, VAEConfig
from diffkit.samplers import registry


def _registered(family: str | None) -> AfterValidator:
    """A sampler name the registry knows and that fits ``family`` (None: any), refused as
    pydantic refuses a ``Literal`` of those names."""

    def check(name: str) -> str:
        known = registry.names(family)
        if name not in known:
            quoted = [repr(n) for n in known]
            expected = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
            raise PydanticCustomError("literal_error", "Input should be {expected}",
                                      {"expected": expected})  # fmt: skip
        return name

    return AfterValidator(check)


SamplerName = Annotated[str, _registered(None)]
OdeSolverName = Annotated[str, _registered("flow")]  # the solvers a flow samples with

RunName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]  # the folder suffix
Precision = Literal["auto", "fp32", "bf16", "fp16"]
LRSchedule = Literal["cosine", "constant", "exponential"]
Preset = Literal["tiny", "small", "small-v1", "default", "latent-flat", "latent-spatial"]
# DDPM models take every sampler (the ODE solvers through the probability-flow velocity);
# rectified flows take the ODE solvers.


class DiffusionConfig(Frozen):
    """The discrete DDPM forward process and what the network predicts."""

    schedule: Literal["linear", "cosine"] = "linear"
    num_steps: int = Field(1000, ge=2, le=100_000)
    beta_start: float = Field(1e-4, gt=0, lt=1)
    beta_end: float = Field(0.02, gt=0, lt=1)
    prediction: Literal["eps", "x0", "v", "edm"] = Field(
        "eps", description="eps | x0 | v | edm (Karras et al. 2022 preconditioning)"
    )
    min_snr_gamma: float | None = Field(
        None, gt=0, description="Min-SNR-gamma loss weighting (Hang et al. 2023); None = off"
    )
    noise_levels: Literal["uniform", "log_normal"] = Field(
        "uniform", description="training noise levels: t ~ U{0..T-1}, or EDM's ln sigma ~ N"
    )
    log_sigma_mean: float = Field(-1.2, description="mean of ln sigma (log_normal levels)")
    log_sigma_std: float = Field(1.2, gt=0, description="std of ln sigma (log_normal levels)")


class DataConfig(Frozen):
    """Which dataset to train on; see :mod:`diffkit.data.registry` for names. A prepared
    dataset's ``channels`` and ``image_size`` are its manifest's, filled in where a run's
    config is made (:func:`diffkit.data.prepared.with_manifest_shape`): validating a config
    reads no file."""

    dataset: str = "mnist"
    limit: int | None = Field(None, ge=1, description="use only the first N training images")
    image_size: int = Field(32, ge=4, description="resize target for folder: datasets")
    channels: Literal[1, 3] = Field(3, description="1 = gray, 3 = RGB, for folder: datasets")
    class_names: tuple[str, ...] | None = Field(
        None, description="a labelled folder's classes in label order, recorded when training "
        "starts: the run keeps them if the folder moves, and a folder that changed is refused"
    )  # fmt: skip

    @field_validator("dataset")
    @classmethod
    def _known(cls, name: str) -> str:
        from diffkit.data.registry import check_name

        return check_name(name)

    @field_validator("class_names")
    @classmethod
    def _distinct(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if names is not None and (not names or len(set(names)) != len(names) or "" in names):
            raise ValueError("data.class_names must be distinct, non-empty names")
        return names


class TrainConfig(Frozen):
    """Optimisation and bookkeeping of one training run."""

    epochs: int = Field(40, ge=1)
    batch_size: int = Field(128, ge=1, description="images per optimizer step per process")
    grad_accum: int = Field(
        1, ge=1, description="micro-batches per step: batch_size is split into this many, "
        "their gradients summed before one optimizer step (less memory, same batch)"
    )  # fmt: skip
    lr: float = Field(2e-4, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(500, ge=0)
    lr_schedule: LRSchedule = "cosine"
    lr_final_factor: float = Field(0.1, ge=0, le=1, description="LR at the end / peak LR")
    grad_clip: float | None = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    ema_warmup: bool = True
    snapshot_every_steps: int = Field(
        0, ge=0, description="save the mean raw weights every N steps, for `diffkit ema` "
        "(post-hoc EMA of any decay); 0 = never"
    )  # fmt: skip
    precision: Precision = "auto"
    channels_last: bool = True
    seed: int = Field(0, ge=0, lt=2**31)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    keep_last_n: int = Field(
        2, ge=0, description="numbered checkpoints (one per epoch, and one every "
        "checkpoint_every_steps) kept besides last: the newest N; 0 = only last"
    )  # fmt: skip
    checkpoint_every_steps: int = Field(
        0, ge=0, description="also a checkpoint every N steps (last and a step-NNNNNNN "
        "file), so a crash loses at most N steps; 0 = at epoch ends only"
    )  # fmt: skip
    sample_every: int = Field(1, ge=0, description="preview grid every N epochs (0 = never)")
    preview_n: int = Field(64, ge=1)
    preview_sampler: SamplerName = Field(
        "ddpm", description="ancestral sampling forgives an undertrained model; ddim is eta=0"
    )
    preview_steps: int = Field(50, ge=1)
    log_every: int = Field(20, ge=1)
    eval_every: int = Field(
        0, ge=0, description="FID/KID of the EMA model every N epochs (0 = never)"
    )
    sample_every_steps: int = Field(0, ge=0, description="also a preview every N steps")
    eval_every_steps: int = Field(0, ge=0, description="also an evaluation every N steps")
    eval_n: int = Field(1000, ge=10, description="images generated per evaluation")
    eval_sampler: SamplerName = registry.default("ddpm")  # a DDPM's default sampler
    eval_steps: int | None = Field(
        None, ge=1, description="steps of eval_sampler (default: the sampler's own)"
    )
    keep_best: bool = Field(False, description="keep checkpoints/best.safetensors by lowest FID")
    cond_drop: float = Field(
        0.1, ge=0.0, lt=1.0, description="label -> null class probability (CFG training)"
    )

    @model_validator(mode="after")
    def _eval_consistent(self) -> Self:
        if self.keep_best and not (self.eval_every or self.eval_every_steps):
            raise ValueError("train.keep_best needs train.eval_every or eval_every_steps > 0")
        return self

    @model_validator(mode="after")
    def _equal_micro_batches(self) -> Self:
        # Equal micro-batches make the mean of their losses the batch's loss exactly, and
        # keep one input shape for torch.compile.
        if self.batch_size % self.grad_accum:
            raise ValueError(f"train.batch_size {self.batch_size} is not divisible by "
                             f"train.grad_accum {self.grad_accum}")  # fmt: skip
        return self


def _model_kind(value: Any) -> str:
    """The ``kind`` of a denoiser config; a mapping without one is a UNet."""
    if isinstance(value, dict):
        return value.get("kind", "unet")
    return getattr(value, "kind", "unet")


DenoiserConfig = Annotated[
    Annotated[UNetConfig, Tag("unet")] | Annotated[MLPConfig, Tag("mlp")],
    Discriminator(_model_kind),
]


class PretrainedVAEConfig(Frozen):
    """A pretrained diffusers ``AutoencoderKL`` (e.g. ``hf:stabilityai/sd-vae-ft-mse``) as a
    frozen codec. Its weights are referenced by ``LatentConfig.source`` and ``sha256``, not
    embedded: 84 M parameters in every checkpoint would be 335 MB each."""

    config: dict[str, Any] = Field(description="the AutoencoderKL's own config (from_config)")
    latent_shape: tuple[int, int, int] = Field(description="(C, H, W) of one latent")
    image_size: int = Field(ge=8, description="side of the images it encodes")
    image_channels: Literal[1, 3] = Field(
        3, description="the data's channels; gray images are repeated to RGB and decoded "
        "as the mean of the three"
    )  # fmt: skip


class LatentConfig(Frozen):
    """The autoencoder of a latent model: a diffkit VAE (``vae``), whose weights travel
    inside every checkpoint under ``vae.``, so the model needs no other file to sample; or
    a pretrained diffusers one (``pretrained``), loaded from ``source`` and checked against
    ``sha256`` on every load."""

    source: str = Field(description="the VAE run, file, folder or hf: id it was trained with")
    sha256: str = Field(description="digest of the VAE's weights")
    shift: float
    scale: float = Field(gt=0)
    vae: VAERunConfig | None = None
    pretrained: PretrainedVAEConfig | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.vae is None) == (self.pretrained is None):
            raise ValueError("a latent section names either a diffkit vae or a pretrained one")
        return self

    @property
    def latent_shape(self) -> tuple[int, ...]:
        if self.vae is not None:
            return self.vae.model.latent_shape
        assert self.pretrained is not None
        return self.pretrained.latent_shape


class InitConfig(Frozen):
    """Fine-tuning: the trained run whose weights a run starts from (``--init-from``); its
    optimizer, LR schedule and step count start afresh."""

    source: str = Field(description="the run folder or checkpoint the weights came from")
    weights: Literal["ema", "model"] = Field(
        "ema", description="its EMA weights (the sampled ones) or its raw trained weights"
    )
    sha256: str | None = Field(
        None, description="sha256 of the weights loaded (recorded when training starts)"
    )


DistillMethod = Literal["cd", "ect"]


class DistillConfig(Frozen):
    """A few-step student (``diffkit distill``): a consistency model of its teacher, whose
    network and weights it starts from. ``cd``: consistency distillation (Song et al. 2023),
    the target one teacher ODE step along a ``teacher_steps`` grid; ``ect``: easy
    consistency tuning (Geng et al. 2024), no teacher evaluations, the gap between the two
    noise levels shrinking by ``ect_q`` every ``ect_stage_steps`` steps."""

    method: DistillMethod = Field(description="cd | ect")
    teacher: str = Field(description="the run or checkpoint distilled (its EMA weights)")
    teacher_sha256: str = Field(description="sha256 of the teacher's EMA weights")
    steps: int = Field(2, ge=1, le=1000, description="the student's default sampling steps")
    sampler: SamplerName | None = Field(
        None, description="the student's default sampler (None: the one measured best for "
        "its family: ddim for DDPMs, consistency for flows)"
    )  # fmt: skip
    teacher_steps: int = Field(
        50, ge=2, le=1000, description="cd: the grid the teacher steps along"
    )
    guidance: float = Field(
        1.0, ge=0, le=20, description="cd: the teacher's CFG scale, baked into the student "
        "(class-conditional teachers; 1 = plain conditional, guidance kept for sampling)"
    )  # fmt: skip
    target: Literal["ema", "live"] = Field(
        "ema", description="cd: the target network, the EMA of the student's weights (Song "
        "et al. 2023) or its current weights (stop-gradient)"
    )  # fmt: skip
    huber_c: float | None = Field(
        None, gt=0, description="pseudo-Huber loss constant (None: 0.00054 sqrt(d), "
        "Song and Dhariwal 2023)"
    )  # fmt: skip
    ect_q: float = Field(2.0, gt=1, description="ect: the gap shrinks by this factor per stage")
    ect_stage_steps: int = Field(
        250, ge=1, description="ect: optimizer steps per stage of the gap schedule"
    )
    ect_log_sigma_mean: float = Field(-1.1, description="ect: training noise levels, ln sigma mean")
    ect_log_sigma_std: float = Field(2.0, gt=0, description="ect: ln sigma std")


class GenerativeRunConfig(Frozen):
    """What DDPM and rectified-flow runs share: a denoiser (UNet, or MLP for flat latents)
    trained on pixels or, with a ``latent`` section, on a VAE's latents."""

    name: RunName = "run"
    preset: Preset = Field("default", description="tiny | small (2-core CPU) | default (GPU)")
    model: DenoiserConfig = UNetConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    latent: LatentConfig | None = None
    init_from: InitConfig | None = Field(
        None, description="fine-tuning: the weights training started from"
    )
    distill: DistillConfig | None = Field(
        None, description="a few-step student: how it was distilled, and from which teacher"
    )

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample the network generates: an image, or a latent."""
        if self.latent is not None:
            return self.latent.latent_shape
        m = self.model
        assert isinstance(m, UNetConfig)
        return (m.in_channels, m.image_size, m.image_size)

    @model_validator(mode="after")
    def _consistent_model(self) -> Self:
        if (self.latent is not None) != (self.preset[:7] == "latent-"):
            raise ValueError("a latent section and a latent-* preset go together")
        if self.latent is None and self.model.kind != "unet":
            raise ValueError("a pixel-space model needs a unet model")
        if self.latent is not None:
            _check_latent_model(self.model, self.latent.latent_shape)
            p = self.latent.pretrained
            if p is not None:
                from diffkit.data.registry import image_shape

                if image_shape(self.data) != (p.image_channels, p.image_size):
                    raise ValueError(
                        f"the pretrained autoencoder was loaded for {p.image_channels}x"
                        f"{p.image_size}px images, not the data's {image_shape(self.data)}"
                    )
        if isinstance(self.model, UNetConfig) and self.model.out_ch != self.model.in_channels:
            raise ValueError("model.out_channels must equal in_channels for a denoiser")
        return self


class DDPMRunConfig(GenerativeRunConfig):
    """``diffkit train ddpm`` (pixels) and ``diffkit train ldm`` (a VAE's latents)."""

    method: Literal["ddpm", "ldm"] = "ddpm"
    diffusion: DiffusionConfig = DiffusionConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.method == "ldm") != (self.latent is not None):
            raise ValueError("method 'ldm', a latent section and a latent-* preset go together")
        t, T = self.train, self.diffusion.num_steps
        if t.preview_steps > T:
            raise ValueError(f"train.preview_steps={t.preview_steps} exceeds "
                             f"diffusion.num_steps={T}")  # fmt: skip
        if t.eval_every and t.eval_steps is not None and t.eval_steps > T:
            raise ValueError(f"train.eval_steps={t.eval_steps} exceeds diffusion.num_steps={T}")
        return self


class FlowConfig(Frozen):
    """How a rectified flow draws its training times (noise at t = 0, data at t = 1)."""

    time_sampling: Literal["uniform", "logit_normal"] = Field(
        "logit_normal",
        description="logit_normal (Esser et al. 2024; measured better on MNIST, "
        "docs/benchmarks.md 7.5) | uniform (Liu et al. 2022)",
    )
    logit_mean: float = Field(0.0, description="mean of the logit-normal's normal")
    logit_std: float = Field(1.0, gt=0, description="std of the logit-normal's normal")


class FlowTrainConfig(TrainConfig):
    """A flow's training options: previews and evaluation use ODE solvers."""

    preview_sampler: OdeSolverName = registry.default("flow")  # a flow's default, euler
    eval_sampler: OdeSolverName = registry.default("flow")


class ReflowConfig(Frozen):
    """Where a reflowed (k+1)-rectified flow or a distilled model came from."""

    pairs: str = Field(description="the pair set (folder) it was trained on")
    pairs_digest: str = Field(description="sha256 over the pair set's shard digests")
    source: str = Field(description="the flow whose ODE produced the pairs")
    generation: int = Field(
        2, ge=1, description="k of the k-rectified flow this run trains (distilled: the source's)"
    )
    distill_steps: int | None = Field(
        None, ge=1, description="k-step distillation (train only at t = 0, 1/k, ...)"
    )
    init_from: str | None = Field(None, description="run whose weights initialised this one")


class FlowRunConfig(GenerativeRunConfig):
    """``diffkit train rf`` (pixels or, with a VAE, latents) and ``diffkit reflow train``."""

    method: Literal["rf"] = "rf"
    flow: FlowConfig = FlowConfig()
    train: FlowTrainConfig = FlowTrainConfig()
    reflow: ReflowConfig | None = None


def _check_latent_model(model: UNetConfig | MLPConfig, shape: tuple[int, ...]) -> None:
    """The denoiser must take the VAE's latents: an MLP of width D for (D,), a UNet of C
    channels at H x H for (C, H, H)."""
    if len(shape) == 1:
        if not isinstance(model, MLPConfig) or model.dim != shape[0]:
            raise ValueError(
                f"flat latents of size {shape[0]} need an mlp model with dim={shape[0]}"
            )
        return
    c, h, _ = shape
    if not isinstance(model, UNetConfig) or (model.in_channels, model.image_size) != (c, h):
        raise ValueError(
            f"spatial latents {c}x{h}x{h} need a unet with in_channels={c}, image_size={h}"
        )


PRESETS: dict[str, dict] = {
    # A few-second network for tests and smoke runs.
    "tiny": {
        "model": {
            "base_channels": 16,
            "channel_mults": (1, 2),
            "num_res_blocks": 1,
            "attention_levels": (),
            "mid_attention": True,
            "head_channels": 16,
            "dropout": 0.0,
            "norm_groups": 8,
        },
        "train": {
            "epochs": 1,
            "batch_size": 32,
            "lr": 1e-3,
            "warmup_steps": 10,
            "preview_n": 16,
            "preview_steps": 10,
            "ema_decay": 0.99,
        },
    },
    # Right-sized for a 2-core CPU: 2x2 pixel-unshuffle to 14x14, two levels, 4-10 minutes
    # (docs/benchmarks.md 16.3 and 17).
    # A DDPM predicts x0 with Min-SNR-5 weights (an ablation, docs/benchmarks.md
    # 16); a flow (`train rf`) takes the network and training recipe only.
    "small": {
        "diffusion": {"prediction": "x0", "min_snr_gamma": 5.0},
        "model": {
            "patch_size": 2,
            "base_channels": 32,
            "channel_mults": (1, 2),
            "num_res_blocks": 1,
            "attention_levels": (),
            "mid_attention": True,
            "head_channels": 32,
            "dropout": 0.0,
            "norm_groups": 8,
        },
        "train": {
            "epochs": 3,
            "batch_size": 64,
            "lr": 1.5e-3,
            "warmup_steps": 100,
            "lr_final_factor": 0.05,
            "ema_decay": 0.995,
            "preview_n": 64,
            "preview_steps": 50,
        },
    },
}
# The earlier `small` recipe (eps prediction, uniform timesteps): kept so its
# numbers in docs/benchmarks.md stay reproducible.
PRESETS["small-v1"] = {"model": dict(PRESETS["small"]["model"]),
                       "train": dict(PRESETS["small"]["train"])}  # fmt: skip
PRESETS |= {
    # Latent diffusion on a flat VAE's latents (B, D): a residual MLP; minutes on a CPU.
    "latent-flat": {
        "model": {"kind": "mlp", "hidden": 512, "depth": 4, "emb_dim": 128, "dropout": 0.0},
        "train": {
            "epochs": 30,
            "batch_size": 256,
            "lr": 1e-3,
            "warmup_steps": 200,
            "lr_final_factor": 0.05,
            "ema_decay": 0.999,
            "sample_every": 10,
            "preview_n": 64,
            "preview_steps": 50,
        },
    },
    # Latent diffusion on a spatial VAE's latents (B, 4, 7, 7): a two-level UNet.
    "latent-spatial": {
        "model": {
            "kind": "unet",
            "base_channels": 64,
            "channel_mults": (1, 2),
            "num_res_blocks": 1,
            "attention_levels": (),
            "mid_attention": True,
            "head_channels": 32,
            "dropout": 0.0,
            "norm_groups": 8,
        },
        "train": {
            "epochs": 10,
            "batch_size": 128,
            "lr": 1e-3,
            "warmup_steps": 200,
            "lr_final_factor": 0.05,
            "ema_decay": 0.999,
            "sample_every": 5,
            "preview_n": 64,
            "preview_steps": 50,
        },
    },
    # The DDPM paper's UNet shape for MNIST (Ho et al. 2020; base 64, 64-128-256,
    # attention at 14x14 and in the middle).
    "default": {
        "model": {
            "base_channels": 64,
            "channel_mults": (1, 2, 4),
            "num_res_blocks": 2,
            "attention_levels": (1,),
            "mid_attention": True,
            "head_channels": 32,
            "dropout": 0.1,
            "norm_groups": 32,
        },
        "train": {
            "epochs": 40,
            "batch_size": 128,
            "lr": 2e-4,
            "warmup_steps": 500,
            "ema_decay": 0.9995,
        },
    },
}


_BRIEF_NO_EMA: dict[str, Any] = {
    "batch_size": 128, "lr": 2e-3, "warmup_steps": 100, "ema_decay": 0.0, "ema_warmup": False,
    "log_every": 50,
}  # fmt: skip
"""What the recipes of the classifier and the VAE share: a short run of batches of 128 at
lr 2e-3 after 100 warm-up steps, without EMA, logged every 50 steps."""


class ClassifierRunConfig(Frozen):
    """``diffkit train classifier``: the feature network of the offline metrics.

    ``BASE`` is the fixed recipe (the lowest config layer; flags and files override it):
    >= 99.3 % MNIST / ~92 % Fashion-MNIST test accuracy in a few CPU minutes.
    """

    BASE: ClassVar[dict[str, Any]] = {"train": _BRIEF_NO_EMA | {
        "epochs": 4, "weight_decay": 5e-4, "lr_final_factor": 0.01, "grad_clip": None,
        "sample_every": 0, "keep_last_n": 0}}  # fmt: skip

    method: Literal["classifier"] = "classifier"
    name: RunName = "run"
    model: ClassifierNetConfig = ClassifierNetConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    max_shift: int = Field(2, ge=0, le=8, description="random translation in pixels")


VAE_NETS: dict[str, dict[str, Any]] = {
    # the spatial default (unshuffle 2, 32-64 channels, one block per level): CPU minutes
    "small": {"latent": "spatial", "patch_size": 2, "base_channels": 32,
              "channel_mults": (1, 2), "num_res_blocks": 1, "latent_channels": 4,
              "norm_groups": 8},
    # latent diffusion's KL-f4 autoencoder (Rombach et al. 2022; ch 128, mult 1-2-4, 2 blocks, z 3):
    # full resolution, latent 3 x H/4 x W/4, ~37 M parameters at RGB; a GPU net
    "kl-f4": {"latent": "spatial", "patch_size": 1, "base_channels": 128,
              "channel_mults": (1, 2, 4), "num_res_blocks": 2, "latent_channels": 3,
              "norm_groups": 32},
}  # fmt: skip
"""The spatial VAEs of ``diffkit train vae --net`` (``model`` fields; nothing else)."""


class VAERunConfig(Frozen):
    """``diffkit train vae``: the image autoencoder of latent diffusion.

    ``BASE`` is its recipe (the lowest config layer; flags and files override it).
    """

    BASE: ClassVar[dict[str, Any]] = {"train": _BRIEF_NO_EMA | {
        "epochs": 10, "weight_decay": 0.0, "lr_final_factor": 0.05, "grad_clip": 1.0,
        "keep_last_n": 1, "preview_n": 32}}  # fmt: skip

    method: Literal["vae"] = "vae"
    name: RunName = "run"
    model: VAEConfig = VAEConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    kl_weight: float = Field(1.0, ge=0.0, description="beta of the beta-VAE objective")
    recon_loss: Literal["bce", "mse"] = Field(
        "bce", description="bce: Bernoulli likelihood on [0, 1] pixels; mse: Gaussian"
    )
    lpips_weight: float = Field(
        0.0, ge=0.0, description="weight of LPIPS(x, reconstruction), counted per pixel "
        "like the reconstruction term (docs/vae.md); 0: no LPIPS"
    )  # fmt: skip
    lpips_net: Literal["alex", "vgg"] = Field("alex", description="LPIPS backbone")

    @model_validator(mode="before")
    @classmethod
    def _model_follows_data(cls, data: Any) -> Any:
        """A model section without an image shape takes its data's. The resolver adds the
        same values, but only after validating the layers once without them, against the
        28 px default: a VAE whose downsampling does not divide 28 (f = 8 for 32 px images)
        could not be configured at all."""
        model = data.get("model", {}) if isinstance(data, dict) else None
        if not isinstance(model, dict) or {"in_channels", "image_size"} <= model.keys():
            return data
        from diffkit.data.registry import image_shape

        try:
            channels, size = image_shape(DataConfig.model_validate(data.get("data", {})))
        except ValueError:  # a bad data section: its own validation says why
            return data
        return {**data, "model": {"in_channels": channels, "image_size": size, **model}}


class PairsConfig(Frozen):
    """``diffkit reflow make-pairs``: (noise, sample) pairs from a flow's ODE, for reflow."""

    method: Literal["pairs"] = "pairs"
    name: RunName = "pairs"
    source: str = Field(description="the flow run or checkpoint that made the pairs")
    source_sha256: str = Field(description="digest of that checkpoint file")
    n: int = Field(60_000, ge=1, description="number of pairs")
    steps: int = Field(100, ge=1, le=10_000, description="solver steps per pair")
    solver: OdeSolverName = registry.default("flow")  # euler
    rtol: float = Field(1e-3, gt=0)
    atol: float = Field(1e-3, gt=0)
    shard_size: int = Field(5000, ge=1, description="pairs per safetensors shard")
    batch_size: int = Field(500, ge=1, description="pairs per forward pass")
    seed: int = Field(0, ge=0, lt=2**31, description="noise of shard k: seed * 1000003 + k")
    guidance: float = Field(1.0, ge=0, description="CFG scale (class-conditional flows)")
    use_ema: bool = True


class HintConfig(Frozen):
    """How a ControlNet's hints are made from images (:mod:`diffkit.data.edges`)."""

    kind: Literal["canny", "sobel"] = "canny"
    low: float = Field(0.1, ge=0, description="canny: weak-edge threshold on the Sobel magnitude")
    high: float = Field(0.2, ge=0, description="canny: strong-edge threshold")
    sigma: float = Field(1.0, ge=0, le=10, description="canny: Gaussian smoothing (0 = none)")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low > self.high:
            raise ValueError(f"hint.low={self.low} is above hint.high={self.high}")
        return self


class BaseRef(Frozen):
    """The frozen model a ControlNet steers: where it was, the sha256 of that checkpoint
    file (checked on every load), and its config."""

    source: str = Field(description="the base run's checkpoint file")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    config: dict[str, Any] = Field(description="the base run's config, as its checkpoint has it")
    embedded: bool = Field(False, description="the checkpoint carries the base's weights (base.*)")


class ControlNetRunConfig(Frozen):
    """``diffkit train controlnet``: a ControlNet on edge maps over a frozen DDPM or flow.

    ``BASE`` is the recipe (flags and files override it); data comes from the base run.
    """

    BASE: ClassVar[dict[str, Any]] = {
        "train": {
            "epochs": 1,
            "batch_size": 64,
            "lr": 5e-4,
            "warmup_steps": 50,
            "lr_final_factor": 0.1,
            "ema_decay": 0.995,
            "cond_drop": 0.5,
            "preview_n": 32,
            "preview_sampler": registry.default("ddpm"),  # (app/train.py: a flow's own)
            "preview_steps": 30,
        }
    }

    method: Literal["controlnet"] = "controlnet"
    name: RunName = "run"
    base: BaseRef
    hint: HintConfig = HintConfig()
    objective: Literal["base", "recon"] = Field(
        "base",
        description="base: the base model's own loss with the hint as extra input; recon: "
        "a baseline: a blank input at the noise end, L1 to the image",
    )
    unlock_decoder: bool = Field(False, description="also train the base UNet's decoder")
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()


class NoiseConfig(Frozen):
    """The corruption a single-step denoiser undoes: ``y = x + sigma * eps`` with sigma in
    units of images in [0, 1] (diffkit's [-1, 1] images see ``2 sigma``)."""

    sigma_min: float = Field(0.5, ge=0, le=100, description="lowest training sigma")
    sigma_max: float = Field(0.5, ge=0, le=100, description="highest (= min: one fixed sigma)")
    sigma_input: bool = Field(False, description="the network sees sigma (as its time input)")
    target: Literal["clean", "noisy"] = Field(
        "clean", description="clean: x; noisy: x + sigma * eps' (Noise2Noise, Lehtinen 2018)"
    )
    pure_noise: bool = Field(
        False,
        description="the input is pure noise z ~ N(0, 1) (images in [0, 1]), no image: "
        "denoising pure noise, whose MMSE answer is the mean image",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.sigma_min > self.sigma_max:
            raise ValueError(f"noise.sigma_min={self.sigma_min} is above "
                             f"noise.sigma_max={self.sigma_max}")  # fmt: skip
        return self


DENOISER_NETS: dict[str, dict[str, Any]] = {
    # the small preset's UNet without attention: minutes on a 2-core CPU
    "small": {"patch_size": 2, "base_channels": 32, "channel_mults": (1, 2),
              "num_res_blocks": 1, "attention_levels": (), "mid_attention": False,
              "dropout": 0.0, "norm_groups": 8},
    # hidden 128, two levels at 28 and 14 px, no attention: a GPU net
    "wide": {"base_channels": 128, "channel_mults": (1, 2), "num_res_blocks": 1,
              "attention_levels": (), "mid_attention": False, "dropout": 0.0,
              "norm_groups": 8},
}  # fmt: skip
"""The networks of ``diffkit train denoiser --net``."""


class DenoiserRunConfig(Frozen):
    """``diffkit train denoiser``: a UNet that maps a noisy image to a clean one in one
    step. ``BASE`` is the recipe of UC Berkeley CS180's diffusion project (Adam 1e-4,
    batch 256, 5 epochs, MSE)."""

    BASE: ClassVar[dict[str, Any]] = {
        "model": DENOISER_NETS["small"],
        "train": {
            "epochs": 5,
            "batch_size": 256,
            "lr": 1e-4,
            "warmup_steps": 0,
            "lr_schedule": "constant",
            "grad_clip": None,
            "ema_decay": 0.0,
            "ema_warmup": False,
            "cond_drop": 0.0,
            "preview_n": 16,
        },
    }

    method: Literal["denoiser"] = "denoiser"
    name: RunName = "run"
    net: Literal["small", "wide"] = "small"
    model: UNetConfig = UNetConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    noise: NoiseConfig = NoiseConfig()

    @field_validator("net", mode="before")
    @classmethod
    def _earlier_name(cls, value: Any) -> Any:
        return "wide" if value == "seeds" else value  # its earlier name, in older runs

    @model_validator(mode="after")
    def _unconditional(self) -> Self:
        if self.model.num_classes is not None:
            raise ValueError("a denoiser is not class-conditional (model.num_classes)")
        return self


# LatentConfig refers to VAERunConfig, defined after it.
LatentConfig.model_rebuild()
GenerativeRunConfig.model_rebuild()
DDPMRunConfig.model_rebuild()
FlowRunConfig.model_rebuild()
