"""`--sample-every-steps` on `train denoiser` (the loop's step-based previews):
grids at the due steps within an epoch, the epoch's at its end, and the run's last step."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.util import invoke, last_line


def test_denoiser_previews_every_n_steps(tmp_path: Path, data_dir: Path):
    run = last_line(invoke("train", "denoiser", "--sigma", "0.5", "--max-steps", "5",
                           "--limit-data", "64", "--batch-size", "16", "--sample-every-steps",
                           "2", "--data-dir", data_dir, "--runs-dir", tmp_path))  # fmt: skip
    grids = sorted(p.name for p in (run / "samples").glob("*.png"))
    # 4 batches an epoch: step 2, step 4 (= the end of epoch 1, named by it), step 5 (the end)
    assert grids == ["epoch-0001.png", "step-0000002.png", "step-0000005.png"]
    assert json.loads((run / "config.json").read_text())["train"]["sample_every_steps"] == 2
