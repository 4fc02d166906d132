"""Network configurations; ``kind`` selects the class in :func:`diffkit.nn.build_model`."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Frozen(BaseModel):
    """Base for every config: immutable and strict about unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class UNetConfig(Frozen):
    """A DDPM-style UNet (Ho et al. 2020; Dhariwal & Nichol 2021 improvements).

    Level ``i`` works at resolution ``image_size / 2**i`` with
    ``base_channels * channel_mults[i]`` channels.
    """

    kind: Literal["unet"] = "unet"
    in_channels: int = Field(1, ge=1)
    out_channels: int | None = Field(None, ge=1, description="defaults to in_channels")
    image_size: int = Field(28, ge=4)
    patch_size: int = Field(
        1, ge=1, le=8, description="pixel-unshuffle factor at the input (2: 28x28x1 -> 14x14x4)"
    )
    base_channels: int = Field(64, ge=4)
    channel_mults: tuple[int, ...] = Field((1, 2, 4), min_length=1)
    num_res_blocks: int = Field(2, ge=1)
    attention_levels: tuple[int, ...] = (1,)
    mid_attention: bool = True
    head_channels: int = Field(32, ge=4, description="channels per attention head")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    norm_groups: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide image_size")
        if self.base_channels % 2:
            raise ValueError("base_channels must be even (sinusoidal time embedding)")
        if any(m < 1 for m in self.channel_mults):
            raise ValueError("channel_mults must all be >= 1")
        levels = len(self.channel_mults)
        bad = [lvl for lvl in self.attention_levels if not 0 <= lvl < levels]
        if bad:
            raise ValueError(f"attention_levels {bad} outside 0..{levels - 1}")
        for ch in {self.base_channels, *(self.base_channels * m for m in self.channel_mults)}:
            if ch % min(self.norm_groups, ch):
                raise ValueError(f"norm_groups={self.norm_groups} does not divide {ch} channels")
            if ch > self.head_channels and ch % self.head_channels:
                raise ValueError(f"head_channels={self.head_channels} does not divide {ch}")
        return self

    @property
    def out_ch(self) -> int:
        return self.out_channels or self.in_channels


class ClassifierNetConfig(Frozen):
    """A small CNN classifier whose penultimate layer is the feature space for FID/KID.

    Per width: two 3x3 conv + BatchNorm + ReLU, then 2x2 max-pool; then a linear layer to
    ``feature_dim`` with BatchNorm (the features), ReLU, dropout and the class logits.
    """

    kind: Literal["classifier"] = "classifier"
    in_channels: int = Field(1, ge=1)
    image_size: int = Field(28, ge=8)
    widths: tuple[int, ...] = Field((16, 32), min_length=1, max_length=4)
    feature_dim: int = Field(128, ge=2)
    num_classes: int = Field(10, ge=2)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.image_size % 2 ** len(self.widths):
            raise ValueError(
                f"image_size {self.image_size} is not divisible by 2^{len(self.widths)} "
                "(one 2x2 pooling per width)"
            )
        return self


ModelConfig = UNetConfig | ClassifierNetConfig
