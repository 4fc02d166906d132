"""The DeepCache figure of docs/benchmarks.md section 8: FID against wall-clock speedup for
every cache-bench of the pixel DDIM-100 model, next to plain DDIM with fewer steps.

    python benchmarks/deepcache_plot.py [--results benchmarks/results/raw/deepcache]
        [--out docs/img/deepcache.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SERIES = {  # bench folder -> legend
    "ddim-b1": "DeepCache, branch 1, reuse",
    "linear-b1": "DeepCache, branch 1, linear",
    "ddim-b2": "DeepCache, branch 2, reuse",
    "linear": "DeepCache, branch 2, linear",
    "quadratic": "DeepCache, branch 2, quadratic",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/raw/deepcache"))
    ap.add_argument("--out", type=Path, default=Path("docs/img/deepcache.png"))
    args = ap.parse_args()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    plain = None
    for folder, name in SERIES.items():
        file = args.results / folder / "cache-bench.json"
        if not file.is_file():
            continue
        points = json.loads(file.read_text())["points"]
        cached = [p for p in points if p["kind"] in ("uncached", "deepcache")]
        ax.plot([p["speedup"] for p in cached], [p["metrics"]["fid"] for p in cached], "o-",
                label=name, ms=4)  # fmt: skip
        for p in cached[1:]:
            ax.annotate(p["label"], (p["speedup"], p["metrics"]["fid"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))  # fmt: skip
        others = [p for p in points if p["kind"] == "ddim"]
        if plain is None and others:
            plain = sorted([points[0], *others], key=lambda p: p["speedup"])
    if plain:
        ax.plot([p["speedup"] for p in plain], [p["metrics"]["fid"] for p in plain], "ks--",
                label="plain DDIM, fewer steps", ms=4)  # fmt: skip
        for p in plain[1:]:
            ax.annotate(f"{p['steps']} steps", (p["speedup"], p["metrics"]["fid"]),
                        fontsize=7, textcoords="offset points", xytext=(3, -10))  # fmt: skip
    ax.set(xscale="log", yscale="log", ylabel="FID",
           xlabel="wall-clock speedup over DDIM-100 (2-core CPU)",
           title="DeepCache on the small class-conditional DDPM, DDIM-100, MNIST")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(args.out)


if __name__ == "__main__":
    main()
