"""How a UNet's cached feature drifts along a sampling trajectory (docs/benchmarks.md 8.3):
the relative change ||f_i - f_(i-1)|| / ||f_i|| of the deep branch's output between
consecutive network calls, averaged over windows of calls; and, per gap N, the mean cosine
between consecutive N-call differences f_i - f_(i-N) and f_(i-N) - f_(i-2N) (near 1: the
drift keeps its direction, which linear extrapolation relies on).

    python benchmarks/deepcache_drift.py RUN [--sampler ddim --steps 100 -n 64 --branches 1,2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from diffkit.accel.deepcache import branch_modules
from diffkit.methods.load import load_pipeline
from diffkit.methods.pipeline import cycle_labels

WINDOWS = ((1, 10), (10, 30), (30, 50), (50, 70), (70, 90), (90, 100))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("--branches", default="1,2")
    args = ap.parse_args()
    pipe = load_pipeline(args.run)
    labels = cycle_labels(pipe.num_classes, args.n)
    print("branch | " + " | ".join(f"calls {a}-{b}" for a, b in WINDOWS))
    for branch in (int(b) for b in args.branches.split(",")):
        _, feature = branch_modules(pipe.net, branch)
        seen: list[torch.Tensor] = []
        hook = feature.register_forward_hook(
            lambda m, a, out, seen=seen: seen.append(out.detach().clone())
        )
        try:
            pipe.sample(args.n, sampler=args.sampler, steps=args.steps, labels=labels)
        finally:
            hook.remove()
        change = [((seen[i] - seen[i - 1]).norm() / seen[i].norm()).item()
                  for i in range(1, len(seen))]  # fmt: skip
        means = [sum(change[a - 1 : b - 1]) / len(change[a - 1 : b - 1]) for a, b in WINDOWS]
        print(f"{branch} | " + " | ".join(f"{100 * m:.1f} %" for m in means))
        for gap in (1, 2, 5, 10):
            cos = [
                torch.cosine_similarity((seen[i] - seen[i - gap]).flatten(),
                                        (seen[i - gap] - seen[i - 2 * gap]).flatten(), dim=0)
                for i in range(2 * gap, len(seen), gap)
            ]  # fmt: skip
            print(f"  gap {gap}: mean cosine of consecutive differences {sum(cos) / len(cos):.2f}")


if __name__ == "__main__":
    main()
