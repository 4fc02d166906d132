"""``diffkit data prepare``: decode a dataset once into memory-mappable arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffkit.app.report import QUIET, Reporter
from diffkit.errors import UsageError

if TYPE_CHECKING:
    from diffkit.config.settings import Settings


@dataclass(frozen=True)
class PrepareRequest:
    """``dataset`` (a registered one or ``folder:PATH``) into ``out`` (None:
    ``DATA_DIR/prepared/NAME-SIDEpx[-gray]``); ``size`` and ``channels`` (1 or 3) are for
    folder datasets only. Built, those are checked."""

    dataset: str
    size: int | None = None
    channels: int | None = None
    out: Path | None = None

    def __post_init__(self) -> None:
        if self.channels not in (None, 1, 3):
            raise UsageError("--channels must be 1 or 3")
        if not self.is_folder and (self.size is not None or self.channels is not None):
            raise UsageError(f"{self.dataset} has a fixed image size; --size and --channels "
                             "are for folder: datasets")  # fmt: skip

    @property
    def is_folder(self) -> bool:
        return self.dataset.startswith("folder:")


@dataclass(frozen=True)
class PrepareResult:
    """The folder written and its manifest (splits, counts, sha256s)."""

    folder: Path
    manifest: dict[str, Any]


def prepare(req: PrepareRequest, settings: Settings, report: Reporter = QUIET) -> PrepareResult:
    """Decode ``req.dataset`` into raw uint8 arrays (+ labels, a manifest with sha256s) that
    training reads as ``--dataset prepared:FOLDER``."""
    from diffkit.config.resolve import validate
    from diffkit.config.run import DataConfig
    from diffkit.data.prepare import prepare as prepare_dataset
    from diffkit.data.prepared import with_manifest_shape
    from diffkit.data.registry import image_shape

    fields = {"dataset": req.dataset} | ({"image_size": req.size} if req.size else {})
    fields |= {"channels": req.channels} if req.channels else {}
    cfg = validate(DataConfig, with_manifest_shape(fields))
    c, side = image_shape(cfg)
    out = req.out
    if out is None:
        name = Path(req.dataset.removeprefix("folder:")).name if req.is_folder else req.dataset
        out = settings.data_dir / "prepared" / f"{name}-{side}px{'-gray' if c == 1 else ''}"
    report.info(f"preparing {req.dataset} ({c}x{side}x{side}) into {out}")
    with report.steps("images", None) as advance:
        manifest = prepare_dataset(cfg, settings.data_dir, out, on_image=advance)
    for split, entry in manifest["splits"].items():
        skipped = f", {entry['skipped']} unreadable files skipped" if entry["skipped"] else ""
        report.info(f"{split}: {entry['count']} images{skipped}")
    return PrepareResult(out, manifest)
