"""Experiment configs: everything that defines a run and is copied into its folder."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from diffkit.config.model import ClassifierNetConfig, Frozen, UNetConfig

Precision = Literal["auto", "fp32", "bf16", "fp16"]
LRSchedule = Literal["cosine", "constant", "exponential"]
Preset = Literal["tiny", "small", "default"]


class DiffusionConfig(Frozen):
    """The discrete DDPM forward process and what the network predicts."""

    schedule: Literal["linear", "cosine"] = "linear"
    num_steps: int = Field(1000, ge=2, le=100_000)
    beta_start: float = Field(1e-4, gt=0, lt=1)
    beta_end: float = Field(0.02, gt=0, lt=1)
    prediction: Literal["eps", "x0", "v"] = "eps"
    min_snr_gamma: float | None = Field(
        None, gt=0, description="Min-SNR-gamma loss weighting (Hang et al. 2023); None = off"
    )


class DataConfig(Frozen):
    """Which dataset to train on; see :mod:`diffkit.data.registry` for names."""

    dataset: str = "mnist"
    limit: int | None = Field(None, ge=1, description="use only the first N training images")
    image_size: int = Field(32, ge=4, description="resize target for folder: datasets")
    channels: Literal[1, 3] = Field(3, description="1 = gray, 3 = RGB, for folder: datasets")

    @field_validator("dataset")
    @classmethod
    def _known(cls, name: str) -> str:
        from diffkit.data.registry import check_name

        return check_name(name)


class TrainConfig(Frozen):
    """Optimisation and bookkeeping of one training run."""

    epochs: int = Field(40, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(2e-4, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(500, ge=0)
    lr_schedule: LRSchedule = "cosine"
    lr_final_factor: float = Field(0.1, ge=0, le=1, description="LR at the end / peak LR")
    grad_clip: float | None = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    ema_warmup: bool = True
    precision: Precision = "auto"
    channels_last: bool = True
    seed: int = Field(0, ge=0, lt=2**31)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    keep_last_n: int = Field(2, ge=0, description="epoch checkpoints kept besides last")
    sample_every: int = Field(1, ge=0, description="preview grid every N epochs (0 = never)")
    preview_n: int = Field(64, ge=1)
    preview_sampler: Literal["ddpm", "ddim"] = Field(
        "ddpm", description="ancestral sampling forgives an undertrained model; ddim is eta=0"
    )
    preview_steps: int = Field(50, ge=1)
    log_every: int = Field(20, ge=1)
    eval_every: int = Field(
        0, ge=0, description="FID/KID of the EMA model every N epochs (0 = never)"
    )
    eval_n: int = Field(1000, ge=10, description="images generated per evaluation")
    eval_sampler: Literal["ddpm", "ddim"] = "ddim"
    eval_steps: int = Field(50, ge=1)
    keep_best: bool = Field(False, description="keep checkpoints/best.safetensors by lowest FID")

    @model_validator(mode="after")
    def _eval_consistent(self) -> Self:
        if self.keep_best and not self.eval_every:
            raise ValueError("train.keep_best needs train.eval_every > 0")
        return self


class DDPMRunConfig(Frozen):
    """``diffkit train ddpm``: a pixel-space DDPM."""

    method: Literal["ddpm"] = "ddpm"
    name: str = Field("run", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    preset: Preset = Field("default", description="tiny | small (2-core CPU) | default (GPU)")
    model: UNetConfig = UNetConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.train.preview_steps > self.diffusion.num_steps:
            raise ValueError(
                f"train.preview_steps={self.train.preview_steps} exceeds "
                f"diffusion.num_steps={self.diffusion.num_steps}"
            )
        if self.train.eval_every and self.train.eval_steps > self.diffusion.num_steps:
            raise ValueError(
                f"train.eval_steps={self.train.eval_steps} exceeds "
                f"diffusion.num_steps={self.diffusion.num_steps}"
            )
        if self.model.out_ch != self.model.in_channels:
            raise ValueError("model.out_channels must equal in_channels for a DDPM denoiser")
        return self


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
    # Right-sized for a 2-core CPU: 2x2 pixel-unshuffle to 14x14, two levels, ~17 minutes.
    "small": {
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
    # The seeds' MNIST network (base 64, 64-128-256, attention at 14x14 and in the middle).
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


class ClassifierRunConfig(Frozen):
    """``diffkit train classifier``: the feature network of the offline metrics.

    ``BASE`` is the fixed recipe (the lowest config layer; flags and files override it):
    >= 99.3 % MNIST / ~92 % Fashion-MNIST test accuracy in a few CPU minutes.
    """

    BASE: ClassVar[dict[str, Any]] = {
        "train": {
            "epochs": 4,
            "batch_size": 128,
            "lr": 2e-3,
            "weight_decay": 5e-4,
            "warmup_steps": 100,
            "lr_final_factor": 0.01,
            "grad_clip": None,
            "ema_decay": 0.0,
            "ema_warmup": False,
            "sample_every": 0,
            "keep_last_n": 0,
            "log_every": 50,
        }
    }

    method: Literal["classifier"] = "classifier"
    name: str = Field("run", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    model: ClassifierNetConfig = ClassifierNetConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    max_shift: int = Field(2, ge=0, le=8, description="random translation in pixels")


METHODS: dict[str, type[Frozen]] = {"ddpm": DDPMRunConfig, "classifier": ClassifierRunConfig}
