"""A rectified flow on pixels, one reflow, and the 1/2/5/10/100-step grid.

Rectified flow and reflow as in Liu et al. 2023 ("Flow Straight and Fast"), on MNIST.

    python examples/rectified_flow_reflow.py --data-dir ../shared/data   # CPU: tens of minutes

On 2 CPU cores the 1-RF, its 12,000 pairs and the 2-RF took tens of minutes together
(docs/benchmarks.md, section 7.1).

This script uses the library calls behind `diffkit train rf`, `diffkit reflow make-pairs`
and `diffkit reflow train`. It draws 16 images from the same noise with the 1-RF and with
the 2-RF at each step count, and prints each model's straightness S.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import diffkit
from diffkit.config import Settings, resolve_run_config
from diffkit.config.run import FlowRunConfig, PairsConfig
from diffkit.methods.generative import train_generative
from diffkit.methods.reflow import file_sha256, load_pairs, make_pairs, reflow_config, straightness
from diffkit.runs.layout import RunDir
from diffkit.runs.plots import save_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--epochs", type=int, default=3, help="1-RF epochs (small preset)")
    ap.add_argument("--pairs", type=int, default=12000)
    ap.add_argument("--reflow-epochs", type=int, default=8)
    args = ap.parse_args()
    overrides = {"data_dir": args.data_dir, "runs_dir": args.runs_dir}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})

    cfg = resolve_run_config(FlowRunConfig, {"preset": "small", "train.epochs": args.epochs,
                                             "name": "rectified-flow-1rf"})  # fmt: skip
    rf1, _ = train_generative(cfg, settings)
    ckpt = rf1.last_checkpoint
    pairs_cfg = PairsConfig(source=str(rf1.path), source_sha256=file_sha256(ckpt),
                            n=args.pairs, steps=8, solver="rk4")  # fmt: skip
    folder = RunDir.create(settings.runs_dir, "pairs", "rectified-flow", subfolders=False).path
    make_pairs(pairs_cfg, diffkit.load(rf1.path), folder)
    pairs = load_pairs(folder)
    recipe = {"train.epochs": args.reflow_epochs, "train.lr": 5e-4}
    cfg2 = reflow_config(pairs, init_from=str(rf1.path), overrides=recipe)
    rf2, _ = train_generative(cfg2, settings, pairs=pairs.data, init_from=rf1.path)

    for run, name in ((rf1, "1-RF"), (rf2, "2-RF")):
        model = diffkit.load(run.path)
        print(f"{name}: S = {straightness(model, n=200)['straightness']:.4f}")
        steps = (1, 2, 5, 10, 100)
        grids = [model.sample(16, sampler="euler", steps=s, seed=0).images for s in steps]
        save_grid(torch.cat(grids), run.path / "euler-steps.png", nrow=16)
        print(f"{name}: rows = 1, 2, 5, 10, 100 Euler steps -> {run.path / 'euler-steps.png'}")


if __name__ == "__main__":
    main()
