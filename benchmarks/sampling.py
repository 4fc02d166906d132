"""DDPM-1000 versus DDIM at fewer steps on a trained run: wall time and grids.

    python benchmarks/sampling.py RUN --n 64 --out benchmarks/results/raw/sampling

Writes ``<out>/<sampler>-<steps>.png`` grids (same seed, same initial noise for all) and
``<out>/sampling.json``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

import diffkit
from diffkit.runs.plots import save_grid

SETTINGS = [("ddpm", 1000), ("ddim", 100), ("ddim", 50), ("ddim", 20), ("ddim", 10)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/raw/sampling"))
    args = ap.parse_args()

    model = diffkit.load(args.run)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for sampler, steps in SETTINGS:
        t0 = time.perf_counter()
        images = model.sample(args.n, sampler=sampler, steps=steps, seed=args.seed).images
        wall = time.perf_counter() - t0
        save_grid(images, args.out / f"{sampler}-{steps}.png", nrow=8)
        rows.append(
            {
                "sampler": sampler,
                "steps": steps,
                "n": args.n,
                "wall_s": wall,
                "ms_per_image": 1000 * wall / args.n,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    (args.out / "sampling.json").write_text(
        json.dumps(
            {
                "date": date.today().isoformat(),
                "run": str(args.run),
                "threads": torch.get_num_threads(),
                "machine": platform.processor() or platform.machine(),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print("| sampler | steps | wall (s) for n | ms / image | speed-up vs DDPM-1000 |")
    print("|---|---|---|---|---|")
    base = rows[0]["wall_s"]
    for r in rows:
        print(
            f"| {r['sampler']} | {r['steps']} | {r['wall_s']:.1f} (n={r['n']}) | "
            f"{r['ms_per_image']:.1f} | {base / r['wall_s']:.1f}x |"
        )


if __name__ == "__main__":
    main()
