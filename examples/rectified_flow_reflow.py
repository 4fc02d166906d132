"""A rectified flow on pixels, one reflow, and the 1/2/5/10/100-step grid.

Rectified flow and reflow as in Liu et al. 2023 ("Flow Straight and Fast"), on MNIST.

    python examples/rectified_flow_reflow.py --data-dir ../shared/data   # CPU: 20-27 minutes

On 2 CPU cores (docs/benchmarks.md): the 1-RF took 510 s alone with the logit-normal times
this script trains with (section 7.5; 806 s with uniform times on a shared CPU, section
7.1), its 12,000 pairs 403-483 s and the 2-RF 303 s (section 7.1); the straightness and
the grids follow in under a minute.

This script uses the library calls behind `diffkit train rf`, `diffkit reflow make-pairs`
and `diffkit reflow train`. It draws 16 images from the same noise with the 1-RF and with
the 2-RF at each step count, and prints each model's straightness S. It prints both run
folders and the pairs folder, and writes ``euler-steps.png`` (one row per step count) into
each model's run folder.

A smoke run in seconds (what the test suite runs; the numbers mean nothing):

    python examples/rectified_flow_reflow.py --preset tiny --limit-data 64 --batch-size 8 \\
        --max-steps 1 --pairs 8 --straightness-n 4 --straightness-steps 2 --n 2 \\
        --grid-steps 1,2
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "default"])
    ap.add_argument("--epochs", type=int, default=3, help="1-RF epochs (small preset)")
    ap.add_argument("--pairs", type=int, default=12000)
    ap.add_argument("--reflow-epochs", type=int, default=8)
    ap.add_argument("--straightness-n", type=int, default=200, help="paths measured for S")
    ap.add_argument("--straightness-steps", type=int, default=100, help="Euler steps for S")
    ap.add_argument("--n", type=int, default=16, help="images per step count")
    ap.add_argument("--grid-steps", default="1,2,5,10,100", help="the grid's rows, in Euler steps")
    small = ap.add_argument_group("shrinking the run (smoke tests)")
    small.add_argument("--limit-data", type=int, default=None, help="first N training images")
    small.add_argument("--batch-size", type=int, default=None, help="both trainings")
    small.add_argument("--max-steps", type=int, default=None, help="both trainings: N steps")
    args = ap.parse_args(argv)
    steps = [int(k) for k in args.grid_steps.split(",")]
    shrink = {"train.batch_size": args.batch_size, "train.max_steps": args.max_steps}
    overrides = {"data_dir": args.data_dir, "runs_dir": args.runs_dir}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})

    flags = {"preset": args.preset, "train.epochs": args.epochs, "name": "rectified-flow-1rf",
             "data.limit": args.limit_data} | shrink  # fmt: skip
    rf1, _ = train_generative(resolve_run_config(FlowRunConfig, flags), settings)
    print(f"1-RF: {rf1.path}")
    ckpt = rf1.last_checkpoint
    pairs_cfg = PairsConfig(source=str(rf1.path), source_sha256=file_sha256(ckpt),
                            n=args.pairs, steps=8, solver="rk4")  # fmt: skip
    folder = RunDir.create(settings.runs_dir, "pairs", "rectified-flow", subfolders=False).path
    make_pairs(pairs_cfg, diffkit.load(rf1.path), folder)
    pairs = load_pairs(folder)
    print(f"pairs: {args.pairs} in {folder}")
    recipe = {"train.epochs": args.reflow_epochs, "train.lr": 5e-4} | shrink
    cfg2 = reflow_config(pairs, init_from=str(rf1.path), overrides=recipe)
    rf2, _ = train_generative(cfg2, settings, pairs=pairs.data, init_from=rf1.path)
    print(f"2-RF: {rf2.path}")

    for run, name in ((rf1, "1-RF"), (rf2, "2-RF")):
        model = diffkit.load(run.path)
        s = straightness(model, n=args.straightness_n, steps=args.straightness_steps)
        s = s["straightness"]
        print(f"{name}: S = {s:.4f}")
        grids = [model.sample(args.n, sampler="euler", steps=k, seed=0).images for k in steps]
        save_grid(torch.cat(grids), run.path / "euler-steps.png", nrow=args.n)
        rows = ", ".join(map(str, steps))
        print(f"{name}: rows = {rows} Euler steps -> {run.path / 'euler-steps.png'}")


if __name__ == "__main__":
    main()
