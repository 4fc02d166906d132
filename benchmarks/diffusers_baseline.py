"""Training throughput of the plain diffusers MNIST recipe, for comparison on this machine.

    pip install diffusers   # not a diffkit dependency
    python benchmarks/diffusers_baseline.py --steps 10

UNet2DModel with block_out_channels (32, 64, 64), two layers per block and attention in the
two lower levels (the Hugging Face diffusion course's MNIST network), fp32, AdamW, batch
128, eps-prediction MSE on 28x28 inputs: the same work per step as a diffkit training step
without EMA.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    from diffusers import UNet2DModel

    net = UNet2DModel(
        sample_size=28, in_channels=1, out_channels=1, layers_per_block=2,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.rand(args.batch_size, 1, 28, 28) * 2 - 1
    for i in range(args.steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        t = torch.randint(0, 1000, (args.batch_size,))
        noise = torch.randn_like(x)
        loss = (net(x + noise, t).sample - noise).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ips = args.steps * args.batch_size / (time.perf_counter() - t0)
    params = sum(p.numel() for p in net.parameters())
    print(
        f"diffusers UNet2DModel 32-64-64: {params / 1e6:.2f}M params, {ips:.0f} img/s train (fp32)"
    )


if __name__ == "__main__":
    main()
