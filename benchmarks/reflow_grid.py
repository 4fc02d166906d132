"""The reflow figure of Liu et al. 2022 (rectified flow, arXiv:2209.03003) for diffkit's flows:
the same noise through each flow at 1, 2, 5, 10, 100 Euler steps.

    python benchmarks/reflow_grid.py RF1 RF2 [MORE] --labels 1-RF,2-RF --out docs/img/x.png

One row block per model, one column per step count; prints the sampling time per cell.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from PIL import Image
from torchvision.utils import make_grid

from diffkit.methods.load import load_pipeline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--labels", default=None)
    ap.add_argument("--steps", default="1,2,5,10,100")
    ap.add_argument("-n", type=int, default=16)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    names = args.labels.split(",") if args.labels else [r.name for r in args.runs]
    labels = names[: len(args.runs)]
    fig, axes = plt.subplots(len(args.runs), len(steps), squeeze=False,
                             figsize=(2.1 * len(steps), 2.3 * len(args.runs)))  # fmt: skip
    for row, (run, label) in enumerate(zip(args.runs, labels, strict=True)):
        pipe = load_pipeline(run)
        for col, s in enumerate(steps):
            start = time.perf_counter()
            x = pipe.sample(args.n, sampler="euler", steps=s, seed=0).images
            ms = 1000 * (time.perf_counter() - start) / args.n
            print(f"{label:>16} euler-{s:<4} {ms:7.2f} ms/image")
            grid = make_grid((x.clamp(-1, 1) + 1) / 2, nrow=4, padding=1, pad_value=1.0)
            ax = axes[row][col]
            ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{s} step{'s' if s > 1 else ''}")
            if col == 0:
                ax.set_ylabel(label)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    Image.open(args.out).convert("L").save(args.out, optimize=True)  # gray: a third the size
    print(args.out)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
