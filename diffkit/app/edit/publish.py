"""An edit's output folder: a samples folder as ``diffkit sample`` writes it (shards
``samples-NNNNN.safetensors`` and sample.json, :class:`~diffkit.runs.samples.SampleWriter`)
with the edit's own files beside them: its labelled grid.png, one PNG per sample and
edit.json. It is built under a hidden name and appears only when complete."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from torch import Tensor

from diffkit.app.common import free_path
from diffkit.app.edit.requests import EditResult
from diffkit.errors import UsageError


def sample_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """sample.json of an edit: its edit.json, with the diffkit run it used as ``source``
    (as ``diffkit sample`` records it, so ``diffkit eval`` finds the dataset from it; a
    diffusers model or none says nothing about the data)."""
    from diffkit.external import is_foreign

    model = meta.get("model")
    own = isinstance(model, str) and not is_foreign(model) and Path(model).exists()
    return {"source": str(Path(model).resolve()) if own else None} | meta


def publish(op: str, out: Path | None, runs_dir: Path, grid: Tensor, nrow: int,
            samples: Tensor, meta: dict[str, Any], labels: list[str] | None = None,
            columns: list[str] | None = None) -> EditResult:  # fmt: skip
    """Write ``grid`` (rows of ``nrow`` images, labelled) and ``samples`` (B, C, H, W) in
    [-1, 1] to ``out`` (None: a fresh ``runs_dir/edit/<stamp>-<op>``), which must not exist."""
    from torchvision.utils import save_image

    from diffkit.runs.layout import write_json
    from diffkit.runs.plots import save_grid
    from diffkit.runs.samples import SampleWriter

    folder = out or free_path(runs_dir / "edit" / f"{datetime.now():%Y%m%d-%H%M%S}-{op}")
    if folder.exists():
        raise UsageError(f"--out {folder} already exists")
    writer = SampleWriter(folder, grid=False)  # the grid is the edit's own, labelled
    try:
        writer.add(samples.detach().float().cpu().contiguous(), None)
        save_grid(grid, writer.tmp / "grid.png", nrow=nrow, row_labels=labels,
                  col_labels=columns)  # fmt: skip
        for i, image in enumerate(samples):
            save_image((image.float() + 1) / 2, writer.tmp / f"{i:03d}.png")
        write_json(writer.tmp / "edit.json", meta)
        writer.publish(sample_meta(meta))
    except FileExistsError:
        writer.discard()
        raise UsageError(f"--out {folder} appeared while the edit ran; kept it") from None
    except BaseException:
        writer.discard()  # nothing half-written is left
        raise
    return EditResult(folder, meta)
