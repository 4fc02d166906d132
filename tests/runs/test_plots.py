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
