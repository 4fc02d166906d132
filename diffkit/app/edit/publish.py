"""An edit's output folder: grid.png, one PNG per sample, samples.safetensors and
edit.json, written beside it and moved in whole."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from torch import Tensor

from diffkit.app.common import free_path
from diffkit.app.edit.requests import EditResult
from diffkit.errors import UsageError


def publish(op: str, out: Path | None, runs_dir: Path, grid: Tensor, nrow: int,
            samples: Tensor, meta: dict[str, Any], labels: list[str] | None = None,
            columns: list[str] | None = None) -> EditResult:  # fmt: skip
    """Write ``grid`` (rows of ``nrow`` images, labelled) and ``samples`` (B, C, H, W) in
    [-1, 1] to ``out`` (None: a fresh ``runs_dir/edit/<stamp>-<op>``), which must not exist."""
    from safetensors.torch import save_file
    from torchvision.utils import save_image

    from diffkit.runs.layout import write_json
    from diffkit.runs.plots import save_grid

    folder = out or free_path(runs_dir / "edit" / f"{datetime.now():%Y%m%d-%H%M%S}-{op}")
    if folder.exists():
        raise UsageError(f"--out {folder} already exists")
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_grid(grid, tmp / "grid.png", nrow=nrow, row_labels=labels, col_labels=columns)
    for i, image in enumerate(samples):
        save_image((image.float() + 1) / 2, tmp / f"{i:03d}.png")
    save_file({"samples": samples.float().contiguous()}, str(tmp / "samples.safetensors"))
    write_json(tmp / "edit.json", meta)
    tmp.rename(folder)
    return EditResult(folder, meta)
