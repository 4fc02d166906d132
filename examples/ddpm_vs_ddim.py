"""Train an unconditional pixel DDPM (Ho et al. 2020) on MNIST, then compare DDPM and DDIM.

    python examples/ddpm_vs_ddim.py --data-dir ../shared/data      # CPU: the `small` preset
    python examples/ddpm_vs_ddim.py --preset default --epochs 40   # 15.4M parameters, a GPU run

On the CPU, training the `small` preset took 545 s (9.7 minutes for the whole command,
previews included) on 2 cores (docs/benchmarks.md, section 16.3); sampling follows. The
`default` preset is a 64-128-256 UNet with attention at 14x14 and in the middle, meant for
a GPU.

Trains through the same library call as ``diffkit train ddpm``, then draws 16 images with
DDPM (1000 ancestral steps) and DDIM (100 steps, eta = 0) from the same noise, timing both
(DDIM: Song et al. 2021). It prints the run folder, the training speed and one line per
sampler, and writes ``ddpm-vs-ddim-<sampler>-<steps>.png`` into the run folder.

A smoke run in seconds (what the test suite runs; the numbers mean nothing):

    python examples/ddpm_vs_ddim.py --preset tiny --limit-data 64 --batch-size 8 \\
        --max-steps 2 --n 4 --ddpm-steps 2 --ddim-steps 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import diffkit
from diffkit.config import DDPMRunConfig, Settings, resolve_run_config
from diffkit.methods.generative import train_generative
from diffkit.runs.plots import save_grid


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "default"])
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--n", type=int, default=16, help="images per sampler")
    ap.add_argument("--ddpm-steps", type=int, default=1000)
    ap.add_argument("--ddim-steps", type=int, default=100)
    small = ap.add_argument_group("shrinking the run (smoke tests)")
    small.add_argument("--limit-data", type=int, default=None, help="first N training images")
    small.add_argument("--batch-size", type=int, default=None)
    small.add_argument("--max-steps", type=int, default=None, help="stop after N steps")
    args = ap.parse_args(argv)

    overrides = {"data_dir": args.data_dir, "runs_dir": args.runs_dir}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    flags = {"preset": args.preset, "name": "ddpm-vs-ddim", "train.epochs": args.epochs,
             "data.limit": args.limit_data, "train.batch_size": args.batch_size,
             "train.max_steps": args.max_steps}  # fmt: skip
    cfg = resolve_run_config(DDPMRunConfig, flags)
    run, result = train_generative(
        cfg, settings, on_run_dir=lambda r: print(f"run folder: {r.path}")
    )
    print(
        f"trained {result.step} steps in {result.elapsed:.0f} s ({result.images_per_sec:.0f} img/s)"
    )

    model = diffkit.load(run.path)
    for sampler, steps in (("ddpm", args.ddpm_steps), ("ddim", args.ddim_steps)):
        t0 = time.perf_counter()
        images = model.sample(args.n, sampler=sampler, steps=steps, seed=0).images
        wall = time.perf_counter() - t0
        save_grid(images, run.path / f"ddpm-vs-ddim-{sampler}-{steps}.png", nrow=4)
        print(f"{sampler.upper()} with {steps} steps: {args.n} images in {wall * 1000:.0f} ms")


if __name__ == "__main__":
    main()
