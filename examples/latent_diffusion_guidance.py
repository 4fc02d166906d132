"""A VAE, latent diffusion on its 64-d latents compared under DDPM and DDIM, and guidance.

Latent diffusion (Rombach et al. 2022) on an MNIST VAE (Kingma & Welling 2014) with a 64-d
vector latent; classifier-free guidance (Ho & Salimans 2022) draws the 10-row class grid.

    python examples/latent_diffusion_guidance.py --data-dir ../shared/data   # CPU: about 17 min
    python examples/latent_diffusion_guidance.py --vae runs/vae/<run>        # reuse a trained VAE

On 2 CPU cores the VAE (5 epochs) took 312 s and the latent DDPM (30 epochs) 701 s
(docs/benchmarks.md, section 6.2); sampling follows.

Everything goes through the library calls behind ``diffkit train vae`` and ``diffkit train
ldm --cond class``; the latent model is class-conditional, so the same network gives the
unconditional samples (no labels: the null class) and the guided class grid (w = 3).
It prints the VAE's and the latent DDPM's run folders, one line per sampler and the class
grid's path, and writes ``latent-<sampler>-<steps>.png`` and ``cfg-grid.png`` into the
latent model's run folder.

A smoke run in seconds (what the test suite runs; the numbers mean nothing):

    python examples/latent_diffusion_guidance.py --limit-data 64 --batch-size 8 \\
        --max-steps 2 --n 4 --ddpm-steps 2 --ddim-steps 2 --per-class 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import diffkit
from diffkit.config import DDPMRunConfig, Settings, resolve_run_config
from diffkit.config.run import VAERunConfig
from diffkit.methods.generative import train_generative
from diffkit.methods.latent import latent_fixed_layer
from diffkit.methods.vae import load_codec, train_vae
from diffkit.runs.plots import save_grid


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--vae", type=Path, default=None, help="a trained VAE run to reuse")
    ap.add_argument("--vae-epochs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None, help="latent DDPM epochs (preset: 30)")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--n", type=int, default=16, help="unguided images per sampler")
    ap.add_argument("--ddpm-steps", type=int, default=1000)
    ap.add_argument("--ddim-steps", type=int, default=100)
    ap.add_argument("--per-class", type=int, default=10, help="class grid: images per digit")
    small = ap.add_argument_group("shrinking the run (smoke tests)")
    small.add_argument("--limit-data", type=int, default=None, help="first N training images")
    small.add_argument("--batch-size", type=int, default=None, help="both trainings")
    small.add_argument("--max-steps", type=int, default=None, help="both trainings: N steps")
    args = ap.parse_args(argv)
    shrink = {"data.limit": args.limit_data, "train.batch_size": args.batch_size,
              "train.max_steps": args.max_steps}  # fmt: skip
    overrides = {"data_dir": args.data_dir, "runs_dir": args.runs_dir}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})

    vae_path = args.vae
    if vae_path is None:  # the flat conv VAE with a 64-d latent
        vae_flags = {"train.epochs": args.vae_epochs, "name": "latent-guidance-vae"} | shrink
        vae_cfg = resolve_run_config(VAERunConfig, vae_flags)
        res = train_vae(vae_cfg, settings)
        print(f"VAE: recon MSE {res.recon_mse:.4f}, KL {res.kl:.1f} nats, {res.run.path}")
        vae_path = res.run.path
    codec = load_codec(vae_path)

    flags = {"train.epochs": args.epochs, "name": "latent-guidance-ldm", "model.num_classes": 10}
    flags |= shrink
    cfg = resolve_run_config(DDPMRunConfig, flags, fixed=latent_fixed_layer(codec),
                             fixed_by="the VAE")  # fmt: skip
    run, result = train_generative(cfg, settings, codec=codec)
    print(f"latent DDPM: {result.step} steps, {result.images_per_sec:.0f} img/s, {run.path}")

    model = diffkit.load(run.path)
    for sampler, steps in (("ddpm", args.ddpm_steps), ("ddim", args.ddim_steps)):
        t0 = time.perf_counter()  # DDPM vs DDIM; no labels: the null class
        images = model.sample(args.n, sampler=sampler, steps=steps).images
        wall = time.perf_counter() - t0
        save_grid(images, run.path / f"latent-{sampler}-{steps}.png", nrow=4)
        print(f"latent {sampler.upper()} {steps} steps: {args.n} images in {wall * 1000:.0f} ms")

    labels = torch.arange(10).repeat_interleave(args.per_class)  # guided: one row per digit
    result = model.sample(len(labels), sampler="ddim", steps=args.ddim_steps, labels=labels,
                          guidance=args.guidance)  # fmt: skip
    save_grid(result.images, run.path / "cfg-grid.png", nrow=args.per_class)
    print(f"class grid (DDIM {args.ddim_steps}, w = {args.guidance}): {run.path / 'cfg-grid.png'}")


if __name__ == "__main__":
    main()
