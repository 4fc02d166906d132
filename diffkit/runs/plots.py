"""Images and plots written into run folders (PIL for grids, matplotlib Agg for curves)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
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
    from PIL import Image
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
    if row_labels or col_labels:
        step = ((images.shape[3] + 2) * scale, (images.shape[2] + 2) * scale)  # cell + padding
        img = _label_margins(img, step, 2 * scale, row_labels or [], col_labels or [])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def save_class_grid(
    images: Tensor, labels: Tensor, path: Path, names: Sequence[str] = (), scale: int = 2
) -> None:
    """Save images (N, C, H, W) with their labels (N,) one class per column, the classes
    in the order they first appear, each one's images top to bottom, its name
    (``names[label]``, else the number) above it: the one layout of class grids (training
    previews, ``diffkit sample --grid-per-class``, sweep and cache-bench grids). Cells a
    shorter column leaves are white, as :func:`save_grid` pads a last row."""
    cells, classes = class_cells(images, labels)
    heads = [names[k] if 0 <= k < len(names) else str(k) for k in classes]
    save_grid(cells, path, nrow=len(classes), scale=scale, col_labels=heads)


def class_cells(images: Tensor, labels: Tensor) -> tuple[Tensor, list[int]]:
    """``(cells, classes)``: the images (N, C, H, W) rearranged to (R * K, C, H, W), row by
    row of a K-column grid whose column j holds class ``classes[j]``'s images in order,
    white (1.0) where a column runs out. Images already cycling 0..K-1 come back as
    they were (up to the white cells of a ragged last row)."""
    classes = list(dict.fromkeys(labels.tolist()))
    columns = [images[labels == k] for k in classes]
    rows = max(len(c) for c in columns)
    cells = torch.ones(rows, len(classes), *images.shape[1:], dtype=images.dtype)  # (R, K, C, H, W)
    for j, column in enumerate(columns):
        cells[: len(column), j] = column
    return cells.flatten(0, 1), classes  # (R * K, C, H, W), row-major


def _label_margins(
    img: Any, step: tuple[int, int], pad: int, row_labels: list[str], col_labels: list[str]
) -> Any:
    """``img`` (a grid whose cells repeat every ``step`` = (x, y) pixels after a ``pad``)
    with a white strip left of it holding ``row_labels`` and one above holding
    ``col_labels``, each centred on its row or column and shortened to fit it: the grid's
    own pixels are pasted unchanged."""
    from PIL import Image, ImageDraw

    draw = ImageDraw.Draw(Image.new("L", (1, 1)))  # PIL's default font, measured
    text_h = draw.textbbox((0, 0), "Agjy/")[3]
    left = 8 + math.ceil(max(draw.textlength(t) for t in row_labels)) if row_labels else 0
    top = text_h + 4 if col_labels else 0
    labelled = Image.new(img.mode, (img.width + left, img.height + top), "white")
    labelled.paste(img, (left, top))
    draw = ImageDraw.Draw(labelled)
    cell_w, cell_h = step[0] - pad, step[1] - pad  # the image inside a cell
    for r, text in enumerate(row_labels):
        draw.text((4, top + pad + r * step[1] + (cell_h - text_h) / 2), text, fill="black")
    for c, text in enumerate(col_labels):
        text = _fit(draw, text, step[0] - 2)
        x = left + pad + c * step[0] + (cell_w - draw.textlength(text)) / 2
        draw.text((x, 2), text, fill="black")
    return labelled


def _fit(draw: Any, text: str, width: float) -> str:
    """``text``, cut and ended with '..' until it is at most ``width`` pixels wide, so a
    long class name never runs into the next column's."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "..") > width:
        text = text[:-1]
    return text + ".." if text else ""


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


def ticks_at(ax: Any, values: Sequence[float]) -> None:
    """x ticks at exactly ``values``, labelled with them and no others; a log scale when
    they are positive and span a decade or more, so 1, 10, 100 steps sit evenly apart."""
    from matplotlib.ticker import NullLocator

    vs = sorted(set(values))
    if not vs:
        return
    if vs[0] > 0 and vs[-1] / vs[0] >= 10:
        ax.set_xscale("log")  # before the ticks: a new scale resets the locators
    ax.xaxis.set_ticks(vs, labels=[f"{v:g}" for v in vs])
    ax.xaxis.set_minor_locator(NullLocator())  # a log axis would add 2..9 x 10^k
    if len(vs) > 8:
        ax.tick_params(axis="x", labelrotation=45)


def place_labels(
    ax: Any,
    points: Sequence[tuple[float, float]],
    texts: Sequence[str],
    *,
    colors: Sequence[Any] | None = None,
    avoid: Sequence[Any] = (),
    fontsize: float = 8,
) -> list[Any]:
    """Annotate each data point with its text (in ``colors``, e.g. its line's) at the
    first spot, on rings of growing radius around it, where the text covers no other
    label, no marker, none of the artists in ``avoid`` (a legend) and stays inside the
    axes (the least covered spot if none is free); beyond the first ring a thin line
    leads back to the point. Spots are chosen in pixels: call it once the axes' limits
    and the figure's layout are final."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = ax.figure
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    frame = ax.get_window_extent(renderer).extents
    pixels = ax.transData.transform(points) if points else []  # (P, 2) display pixels
    taken = [(x - 5, y - 5, x + 5, y + 5) for x, y in pixels]  # markers, about 6 pt wide
    taken += [tuple(a.get_window_extent(renderer).extents) for a in avoid]
    colors = colors or ["black"] * len(texts)
    made = []
    for (x, y), xy, text, color in zip(pixels, points, texts, colors, strict=True):
        probe = ax.text(0, 0, text, fontsize=fontsize)
        box = probe.get_window_extent(renderer)
        probe.remove()
        spots = _spots((x, y), box.width, box.height, fig.dpi / 72)
        (offset, ha, va, r), spot = min(spots, key=lambda s: _cost(s[1], taken, frame))
        ann = ax.annotate(text, xy, xytext=offset, textcoords="offset points", ha=ha, va=va,
                          fontsize=fontsize, color=color, arrowprops=None if r == _RINGS[0] else
                          {"arrowstyle": "-", "lw": 0.5, "color": "0.5"})  # fmt: skip
        ann.set_in_layout(False)  # a later tight_layout must not move the axes under it
        taken.append(spot)
        made.append(ann)
    return made


_RINGS = (6, 14, 24, 36, 50)  # offsets of a label from its point, in points


def _spots(at: tuple[float, float], w: float, h: float, px_per_pt: float) -> list[Any]:
    """Candidate ``((offset, ha, va, radius), box)`` for a w x h pixel text, nearest first:
    8 directions per ring, the text's near side towards the point."""
    out = []
    for r in _RINGS:
        for k in (1, 7, 3, 5, 0, 2, 4, 6):  # diagonals first: clear of a line through it
            c, s = math.cos(k * math.pi / 4), math.sin(k * math.pi / 4)
            ha = "left" if c > 0.3 else "right" if c < -0.3 else "center"
            va = "bottom" if s > 0.3 else "top" if s < -0.3 else "center"
            x0 = at[0] + r * c * px_per_pt - {"left": 0, "right": w, "center": w / 2}[ha]
            y0 = at[1] + r * s * px_per_pt - {"bottom": 0, "top": h, "center": h / 2}[va]
            out.append((((r * c, r * s), ha, va, r), (x0, y0, x0 + w, y0 + h)))
    return out


def _cost(box: tuple[float, ...], taken: list[tuple[float, ...]], frame: Any) -> float:
    """Pixels of ``box`` over taken boxes or outside the axes ``frame``; ties keep the
    earlier (nearer) spot, since ``min`` returns the first."""
    inside = _overlap(box, tuple(frame))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return area - inside + sum(_overlap(box, t) for t in taken)


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Area shared by boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)
