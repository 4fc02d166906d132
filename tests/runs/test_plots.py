"""Plots are drawn on bare matplotlib Figures: the library never picks a backend or
touches pyplot's global state (a notebook's figures and backend stay its own)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_plotting_never_imports_pyplot(tmp_path: Path):
    code = (
        "import sys; from pathlib import Path; from diffkit.runs.plots import plot_loss; "
        "plot_loss([{'step': 1, 'loss': 1.0}, {'step': 2, 'loss': 0.5}], Path(sys.argv[1])); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    )
    out = tmp_path / "loss.png"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, timeout=120)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_cells_put_one_class_per_column():
    import torch

    from diffkit.runs.plots import class_cells

    images = torch.arange(5.0).view(5, 1, 1, 1)  # image i holds the value i
    # class by class (--grid-per-class order): 3, 3, 7, 7, 7
    cells, classes = class_cells(images, torch.tensor([3, 3, 7, 7, 7]))
    assert classes == [3, 7]
    # (3 rows, 2 columns), row-major; column 3 runs out after two: a white cell
    assert cells.flatten().tolist() == [0, 2, 1, 3, 1.0, 4]
    assert cells[4].eq(1.0).all()
    # already cycling 0..K-1 (training previews): the order is kept
    cells, classes = class_cells(images[:4], torch.tensor([0, 1, 0, 1]))
    assert classes == [0, 1] and cells.flatten().tolist() == [0, 1, 2, 3]


def test_class_grid_is_the_plain_grid_under_a_row_of_names(tmp_path: Path):
    """The grid's own pixels are pasted unchanged below a white strip with the names."""
    import numpy as np
    import torch
    from PIL import Image

    from diffkit.runs.plots import class_cells, save_class_grid, save_grid

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(6, 1, 8, 8, generator=gen) * 2 - 1
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    save_class_grid(images, labels, tmp_path / "named.png", ["zero", "one", "a-very-long-name"])
    save_grid(class_cells(images, labels)[0], tmp_path / "plain.png", nrow=3)
    named = np.asarray(Image.open(tmp_path / "named.png"))
    plain = np.asarray(Image.open(tmp_path / "plain.png"))
    top = named.shape[0] - plain.shape[0]
    assert top > 8 and named.shape[1] == plain.shape[1]  # a strip above, no margin left
    assert (named[top:] == plain).all()
    strip = named[:top]
    assert (strip < 128).any()  # some text was drawn
    # each name, cut to fit, stays above its own column: a blank line of pixels in
    # every 4-pixel gap between columns (cells repeat every (8 + 2) * 2 pixels)
    cell = (8 + 2) * 2
    for c in range(1, 3):
        gap = strip[:, c * cell : c * cell + 4]
        assert (gap == 255).all(axis=0).any()


def test_ticks_sit_at_the_swept_values():
    from diffkit.runs.plots import new_figure, ticks_at

    _, (lin, log) = new_figure(1, 2, figsize=(6, 3))
    ticks_at(lin, [2.0, 1.0, 3.0, 2.0])
    assert list(lin.get_xticks()) == [1.0, 2.0, 3.0] and lin.get_xscale() == "linear"
    assert [t.get_text() for t in lin.get_xticklabels()] == ["1", "2", "3"]
    ticks_at(log, [1, 4, 10, 100, 1000])  # spans three decades: evenly spaced on a log axis
    assert log.get_xscale() == "log" and list(log.get_xticks()) == [1, 4, 10, 100, 1000]
    assert len(log.xaxis.get_minorticklocs()) == 0


def _boxes(fig, texts):
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts]


def test_labels_of_crowded_points_do_not_overlap():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from diffkit.runs.plots import new_figure, place_labels

    fig, ax = new_figure(figsize=(4, 3))
    FigureCanvasAgg(fig)
    points = [(1.0, 1.0), (1.02, 1.01), (1.04, 0.99), (1.03, 1.02), (2.0, 2.0)]
    ax.plot(*zip(*points, strict=True), "o")
    ax.set(xlim=(0.5, 2.5), ylim=(0.5, 2.5))
    fig.tight_layout()
    made = place_labels(ax, points, ["interval=2", "interval=3", "interval=5", "uncached", "x"])
    fig.canvas.draw()
    boxes = _boxes(fig, made)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    frame = ax.get_window_extent(fig.canvas.get_renderer())
    assert all(frame.contains(b.x0, b.y0) and frame.contains(b.x1, b.y1) for b in boxes)


def test_sweep_figure_names_run_n_and_feature_net():
    from diffkit.eval.sweep import SweepPoint, sweep_figure

    points = [
        SweepPoint(s, k, 500, 1.0 * k, 2.0 * k, {"fid": 50.0 / k}, f"grid-{s}-{k}.png")
        for s in ("ddim", "euler")
        for k in (5, 10, 20, 50)
    ]
    fig = sweep_figure(points, 0.4, "steps", run="20260101-000000-ddpm-run",
                       features="classifier", feature_sha256="abcdef0123456789")  # fmt: skip
    title = fig._suptitle.get_text()
    assert "20260101-000000-ddpm-run" in title and "n = 500" in title
    assert "classifier (sha256 abcdef012345)" in title and "ddim, euler" in title
    for ax in fig.axes:
        assert list(ax.get_xticks()) == [5, 10, 20, 50] and ax.get_xscale() == "log"
