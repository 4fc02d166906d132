"""Images and plots written into run folders (PIL for grids, matplotlib Agg for curves)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from torch import Tensor

from diffkit.runs.layout import atomic_write_bytes


def save_grid(
    images: Tensor,
    path: Path,
    nrow: int | None = None,
    scale: int = 2,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
) -> None:
    """Save (N, C, H, W) images in [-1, 1] as one PNG grid, upscaled ``scale`` times;
    ``row_labels`` are written in a white margin left of each row, ``col_labels`` above
    each column."""
    from PIL import Image, ImageDraw
    from torchvision.utils import make_grid

    from diffkit.data.loader import to_uint8

    nrow = nrow or max(1, math.isqrt(images.shape[0]))
    grid = make_grid(to_uint8(images.cpu()), nrow=nrow, padding=2, pad_value=255)
    array = grid.permute(1, 2, 0).numpy()
    img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    if grid.shape[0] == 3 and images.shape[1] == 1:
        img = img.convert("L")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    cell_w = grid.shape[2] * scale / nrow  # one column's width, padding included
    cell_h = grid.shape[1] * scale / -(-images.shape[0] // nrow)
    left = 8 + 6 * max(map(len, row_labels)) if row_labels else 0  # default font ~6 px/char
    top = 14 if col_labels else 0
    if left or top:
        labelled = Image.new(img.mode, (img.width + left, img.height + top), 255)
        labelled.paste(img, (left, top))
        draw = ImageDraw.Draw(labelled)
        for r, label in enumerate(row_labels or []):
            draw.text((4, top + r * cell_h + cell_h / 2 - 5), label, fill=0)
        for c, label in enumerate(col_labels or []):
            draw.text((left + c * cell_w + 3, 2), label, fill=0)
        img = labelled
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def plot_loss(records: list[dict[str, Any]], path: Path) -> None:
    """Training loss against step, linear and log scale side by side."""
    if not records:
        return
    steps = [r["step"] for r in records]
    losses = [r["loss"] for r in records]
    fig, axes = new_figure(1, 2, figsize=(10, 3.5))
    for ax, scale in zip(axes, ("linear", "log"), strict=True):
        ax.plot(steps, losses, lw=1)
        ax.set_yscale(scale)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"training loss ({scale})")
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def new_figure(rows: int = 1, cols: int = 1, *, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """``(figure, axes)`` like ``plt.subplots``, but a bare ``Figure``: no pyplot, so no
    backend is chosen and no global figure registry touched (a notebook's stays its own),
    and the figure is freed with its last reference."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols)


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure as PNG, atomically."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)  # a bare Figure renders PNG with Agg itself
    atomic_write_bytes(path, buf.getvalue())
