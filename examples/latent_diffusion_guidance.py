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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--runs-dir", type=Path, default=Path("runs"))
    ap.add_argument("--vae", type=Path, default=None, help="a trained VAE run to reuse")
    ap.add_argument("--vae-epochs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None, help="latent DDPM epochs (preset: 30)")
    ap.add_argument("--guidance", type=float, default=3.0)
    args = ap.parse_args()
    overrides = {"data_dir": args.data_dir, "runs_dir": args.runs_dir}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})

    vae_path = args.vae
    if vae_path is None:  # the flat conv VAE with a 64-d latent
        vae_cfg = resolve_run_config(VAERunConfig, {"train.epochs": args.vae_epochs,
                                                    "name": "latent-guidance-vae"})  # fmt: skip
        res = train_vae(vae_cfg, settings)
        print(f"VAE: recon MSE {res.recon_mse:.4f}, KL {res.kl:.1f} nats, {res.run.path}")
        vae_path = res.run.path
    codec = load_codec(vae_path)

    flags = {"train.epochs": args.epochs, "name": "latent-guidance-ldm", "model.num_classes": 10}
    cfg = resolve_run_config(DDPMRunConfig, flags, fixed=latent_fixed_layer(codec),
                             fixed_by="the VAE")  # fmt: skip
    run, result = train_generative(cfg, settings, codec=codec)
    print(f"latent DDPM: {result.step} steps, {result.images_per_sec:.0f} img/s, {run.path}")

    model = diffkit.load(run.path)
    for sampler, steps in (("ddpm", 1000), ("ddim", 100)):  # DDPM vs DDIM, 16 images
        t0 = time.perf_counter()
        images = model.sample(16, sampler=sampler, steps=steps).images  # no labels: the null class
        wall = time.perf_counter() - t0
        save_grid(images, run.path / f"latent-{sampler}-{steps}.png", nrow=4)
        print(f"latent {sampler.upper()} {steps} steps: 16 images in {wall * 1000:.0f} ms")

    labels = torch.arange(10).repeat_interleave(10)  # guided: one row per digit
    result = model.sample(100, sampler="ddim", steps=100, labels=labels, guidance=args.guidance)
    images = result.images
    save_grid(images, run.path / "cfg-grid.png", nrow=10)
    print(f"class grid (DDIM 100, w = {args.guidance}): {run.path / 'cfg-grid.png'}")


if __name__ == "__main__":
    main()
