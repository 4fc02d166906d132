"""Train an unconditional pixel DDPM (Ho et al. 2020) on MNIST, then compare DDPM and DDIM.

    python examples/ddpm_vs_ddim.py --data-dir ../shared/data      # CPU: the `small` preset
    python examples/ddpm_vs_ddim.py --preset default --epochs 40   # 15.4M parameters, a GPU run

On the CPU, training the `small` preset takes 10-11 minutes on 2 cores (docs/benchmarks.md,
section 16); sampling follows. The `default` preset is a 64-128-256 UNet with attention at
14x14 and in the middle, meant for a GPU.

Trains through the same library call as ``diffkit train ddpm``, then draws 16 images with
DDPM (1000 ancestral steps) and DDIM (100 steps, eta = 0) from the same noise, timing both
(DDIM: Song et al. 2021).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import diffkit
from diffkit.config import DDPMRunConfig, Settings, resolve_run_config
from diffkit.methods.generative import train_generative
from diffkit.runs.plots import save_grid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small", choices=["tiny", "small", "default"])
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--n", type=int, default=16)
    args = ap.parse_args()

    overrides = {"data_dir": args.data_dir, "runs_dir": args.runs_dir}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    cfg = resolve_run_config(
        DDPMRunConfig, {"preset": args.preset, "name": "ddpm-vs-ddim", "train.epochs": args.epochs}
    )
    run, result = train_generative(
        cfg, settings, on_run_dir=lambda r: print(f"run folder: {r.path}")
    )
    print(
        f"trained {result.step} steps in {result.elapsed:.0f} s ({result.images_per_sec:.0f} img/s)"
    )

    model = diffkit.load(run.path)
    for sampler, steps in (("ddpm", 1000), ("ddim", 100)):
        t0 = time.perf_counter()
        images = model.sample(args.n, sampler=sampler, steps=steps, seed=0).images
        wall = time.perf_counter() - t0
        save_grid(images, run.path / f"ddpm-vs-ddim-{sampler}-{steps}.png", nrow=4)
        print(f"{sampler.upper()} with {steps} steps: {args.n} images in {wall * 1000:.0f} ms")


if __name__ == "__main__":
    main()
