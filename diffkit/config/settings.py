"""Machine settings (paths, device, threads): the one ``BaseSettings`` of diffkit."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from platformdirs import user_cache_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DeviceChoice = Literal["auto", "cpu", "cuda"]


class Settings(BaseSettings):
    """Where runs and data live and what hardware to use. Env vars: ``DIFFKIT_RUNS_DIR`` ..."""

    model_config = SettingsConfigDict(env_prefix="DIFFKIT_", frozen=True, extra="ignore")

    runs_dir: Path = Path("runs")
    data_dir: Path = Field(default_factory=lambda: Path(user_cache_dir("diffkit")) / "data")
    device: DeviceChoice = "auto"
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads; applied once by the CLI, never by the library"
    )
    download: bool = Field(True, description="allow fetching missing datasets")
    cache_dir: Path = Field(
        default_factory=lambda: Path(user_cache_dir("diffkit")),
        description="reference feature statistics for the metrics, prompt embeddings",
    )
    inception_weights: Path | None = Field(
        None, description="torchvision InceptionV3 state dict (.pth) for --features inception"
    )
    tf_inception_weights: Path | None = Field(
        None,
        description="torch-fidelity's TF-Inception weights (.pth) for --features tf-inception "
        "(default: torch hub's checkpoints folder)",
    )
    lpips_weights: Path | None = Field(
        None,
        description="torchvision's ImageNet AlexNet or VGG16 state dict (.pth), the LPIPS "
        "backbone for --lpips (default: torch hub's checkpoints folder)",
    )
    max_image_pixels: int = Field(
        8192 * 8192,
        ge=1,
        description="the most pixels (width x height, from the file's header) an image file "
        "given to diffkit may declare; larger ones are refused before decoding",
    )
    compile: bool = Field(
        False, description="torch.compile the network for training and sampling (--compile)"
    )
    compile_backend: str = Field(
        "inductor", description="torch.compile backend (tests use aot_eager: no C++ build)"
    )

    @property
    def compile_with(self) -> str | None:
        """The torch.compile backend to run networks with; None: eager. A machine setting,
        not part of a run's config: compiled and eager runs agree up to round-off."""
        return self.compile_backend if self.compile else None
