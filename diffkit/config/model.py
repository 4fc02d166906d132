"""Network configurations; ``kind`` selects the class in :func:`diffkit.nn.build_model`."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Frozen(BaseModel):
    """Base for every config: immutable, strict about unknown keys, and finite: a NaN in a
    config file or ``DIFFKIT_*`` variable is refused like a NaN flag, not trained with."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


CondRoute = Literal["time", "input", "cross"]


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
    channel_mults: tuple[int, ...] = Field((1, 2, 4), min_length=1, max_length=8)
    num_res_blocks: int = Field(2, ge=1, le=64)
    attention_levels: tuple[int, ...] = (1,)
    mid_attention: bool = True
    head_channels: int = Field(32, ge=4, description="channels per attention head")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    norm_groups: int = Field(32, ge=1)
    activation: Literal["silu", "gelu"] = Field(
        "silu", description="nonlinearity of the residual blocks and the output head"
    )
    mid_block: Literal["resnet", "transformer"] = Field(
        "resnet", description="middle: res-attn-res, or DiT blocks with AdaLN-Zero"
    )
    transformer_depth: int = Field(2, ge=1, le=24)
    transformer_heads: int = Field(4, ge=1)
    num_classes: int | None = Field(None, ge=2, description="None = unconditional")
    cond_routes: tuple[CondRoute, ...] = Field(
        ("time",), min_length=1, description="how a class label enters: time, input, cross"
    )
    cross_attention_levels: tuple[int, ...] = Field(
        (), description="levels with cross-attention (the middle always has it with 'cross')"
    )
    context_tokens: int = Field(4, ge=1, description="class tokens for cross-attention")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(set(self.cond_routes)) != len(self.cond_routes):
            raise ValueError(f"cond_routes {self.cond_routes} repeats a route")
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide image_size")
        if self.base_channels % 2:
            raise ValueError("base_channels must be even (sinusoidal time embedding)")
        if any(m < 1 for m in self.channel_mults):
            raise ValueError("channel_mults must all be >= 1")
        levels = len(self.channel_mults)
        for name in ("attention_levels", "cross_attention_levels"):
            bad = [lvl for lvl in getattr(self, name) if not 0 <= lvl < levels]
            if bad:
                raise ValueError(f"{name} {bad} outside 0..{levels - 1}")
        mid = self.base_channels * self.channel_mults[-1]
        if self.mid_block == "transformer" and mid % self.transformer_heads:
            raise ValueError(
                f"transformer_heads={self.transformer_heads} does not divide the {mid} middle "
                "channels"
            )
        for ch in sorted(self.norm_widths):
            if ch % min(self.norm_groups, ch):
                raise ValueError(f"norm_groups={self.norm_groups} does not divide {ch} channels")
        for ch in {self.base_channels, *(self.base_channels * m for m in self.channel_mults)}:
            if ch > self.head_channels and ch % self.head_channels:
                raise ValueError(f"head_channels={self.head_channels} does not divide {ch}")
        return self

    @property
    def skip_channels(self) -> tuple[int, ...]:
        """The width of every skip the down path keeps, input conv first: each level's
        residual blocks, then its downsample (all but the last level). The UNet builds its
        decoder from this list."""
        base, n, mults = self.base_channels, self.num_res_blocks, self.channel_mults
        skips = [base]
        for level, mult in enumerate(mults):
            skips += [base * mult] * (n + (level < len(mults) - 1))
        return tuple(skips)

    @property
    def norm_widths(self) -> set[int]:
        """Every channel count a group norm sees: the level widths and the decoder's inputs,
        each its width plus the skip it concatenates (popped deepest first, as the UNet
        does)."""
        base, mults = self.base_channels, self.channel_mults
        skips, ch = list(self.skip_channels), base * mults[-1]
        widths = {base, *(base * m for m in mults)}
        for mult in reversed(mults):
            for _ in range(self.num_res_blocks + 1):
                widths.add(ch + skips.pop())
                ch = base * mult
        return widths

    @property
    def out_ch(self) -> int:
        return self.out_channels or self.in_channels

    @property
    def bottleneck_size(self) -> int:
        """Side of the lowest-resolution feature map (each stride-2 step rounds up)."""
        side = self.image_size // self.patch_size
        for _ in self.channel_mults[1:]:
            side = -(-side // 2)
        return side


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
    num_classes: int = Field(
        10, ge=2, description="set from the dataset's classes by `diffkit train classifier`"
    )
    dropout: float = Field(0.3, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.image_size % 2 ** len(self.widths):
            raise ValueError(
                f"image_size {self.image_size} is not divisible by 2^{len(self.widths)} "
                "(one 2x2 pooling per width)"
            )
        return self


class MLPConfig(Frozen):
    """A residual MLP denoiser for flat (B, D) inputs, e.g. the latents of a flat VAE.

    ``depth`` blocks of LayerNorm -> scale-shift by the time (+ class) embedding -> SiLU ->
    Linear -> SiLU -> Linear, each added to the residual stream of width ``hidden``.
    """

    kind: Literal["mlp"] = "mlp"
    dim: int = Field(64, ge=1, description="input and output width (the latent dimension)")
    hidden: int = Field(512, ge=8)
    depth: int = Field(4, ge=1, le=256)
    emb_dim: int = Field(128, ge=8, description="time (+ class) embedding width; even")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    num_classes: int | None = Field(None, ge=2, description="None = unconditional")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.emb_dim % 2:
            raise ValueError("emb_dim must be even (sinusoidal time embedding)")
        return self


class VAEConfig(Frozen):
    """A convolutional VAE. ``flat``: a small conv encoder/decoder with a vector latent
    of ``latent_dim``; ``spatial``: a residual encoder/decoder whose level ``i`` has
    ``base_channels * channel_mults[i]`` channels and ``num_res_blocks`` blocks, after a
    ``patch_size`` pixel-unshuffle, with self-attention at the lowest resolution and a
    ``latent_channels`` x (image_size / downsampling)^2 latent.

    The spatial defaults (patch 2, mults 1-2, one block) are the one network the spatial
    VAE had before these fields existed, so older configs build it unchanged."""

    kind: Literal["vae"] = "vae"
    latent: Literal["flat", "spatial"] = "flat"
    in_channels: int = Field(1, ge=1)
    image_size: int = Field(28, ge=8)
    latent_dim: int = Field(64, ge=1, description="flat latent size")
    latent_channels: int = Field(4, ge=1, description="spatial latent channels")
    base_channels: int = Field(32, ge=8, description="spatial VAE width")
    norm_groups: int = Field(8, ge=1)
    patch_size: int = Field(
        2, ge=1, le=8, description="spatial: pixel-unshuffle factor at the input (1: none)"
    )
    channel_mults: tuple[int, ...] = Field(
        (1, 2), min_length=2, max_length=6, description="spatial: level widths / base_channels"
    )
    num_res_blocks: int = Field(1, ge=1, le=16, description="spatial: residual blocks per level")

    @model_validator(mode="after")
    def _check(self) -> Self:
        factor = self.downsampling
        if self.image_size % factor:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by {factor} "
                f"(the {self.latent} VAE's downsampling)"
            )
        if self.latent == "flat":
            return self
        if any(m < 1 for m in self.channel_mults):
            raise ValueError("channel_mults must all be >= 1")
        for ch in sorted({self.base_channels * m for m in self.channel_mults}):
            if ch % min(self.norm_groups, ch):
                raise ValueError(f"norm_groups={self.norm_groups} does not divide {ch} channels")
        return self

    @property
    def downsampling(self) -> int:
        """Image side / latent side: 4 for the flat encoder's two stride-2 convs; the
        unshuffle times one stride-2 conv per level after the first for the spatial one."""
        if self.latent == "flat":
            return 4
        return self.patch_size * 2 ** (len(self.channel_mults) - 1)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one latent: (D,) or (C, H/f, W/f), f = ``downsampling``."""
        if self.latent == "flat":
            return (self.latent_dim,)
        side = self.image_size // self.downsampling
        return (self.latent_channels, side, side)


ModelConfig = UNetConfig | ClassifierNetConfig | MLPConfig | VAEConfig
