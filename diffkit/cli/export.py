"""``diffkit export RUN --format diffusers OUT``: a run as a diffusers pipeline folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from diffkit.cli import console
from diffkit.cli.errors import UsageError, handle_errors
from diffkit.cli.flags import DEVICE, NO_EMA, OVERWRITE, argument, flag, takes
from diffkit.cli.options import settings_of

EXPORT = (
    argument("source", Path, "Run folder or .safetensors checkpoint (ddpm, ldm or rf)."),
    argument("out", Path, "Folder to write (refused if it exists, unless --overwrite)."),
    flag("fmt", Literal["diffusers"], "diffusers", "diffusers: a folder "
         "DiffusionPipeline.from_pretrained(OUT, trust_remote_code=True) loads (needs the "
         "diffusers extra).", None, "--format"),
    NO_EMA, OVERWRITE.but("Replace OUT if it is an earlier export."), DEVICE,
)  # fmt: skip


@handle_errors
@takes(EXPORT)
def export(**o: Any) -> None:
    """Export a run: unet/ (diffkit's network code and weights, EMA by default),
    scheduler/, vae/ for latent models, the DiffkitPipeline, a README.md model card
    (config, metrics) and samples.png (the newest preview grid, or a new one)."""
    from diffkit.external.export import export_run
    from diffkit.runs.layout import check_writable
    from diffkit.training.hardware import resolve_device

    source, out = o["source"], o["out"]
    if (out.exists() or out.is_symlink()) and not o["overwrite"]:
        raise UsageError(f"{out} already exists; pass --overwrite to replace an earlier "
                         "export")  # fmt: skip
    check_writable(out.parent)
    settings = settings_of(o)
    result = export_run(source, out, fmt=o["fmt"], use_ema=not o["no_ema"],
                        overwrite=o["overwrite"],
                        device=resolve_device(settings.device))  # fmt: skip
    grid = "sampled now" if result.grid == "generated" else f"copied from {result.grid}"
    console.info(f"exported the {result.weights} weights of {source} as a diffusers "
                 f"pipeline; samples.png {grid}")  # fmt: skip
    console.out.print(str(result.out))
