"""Real-vs-real floors: the metrics of n real training images against the test split.

    DIFFKIT_DATA_DIR=../shared/data DIFFKIT_RUNS_DIR=runs python benchmarks/floor.py

Uses the newest feature classifier per dataset under DIFFKIT_RUNS_DIR and a fresh cache
folder (so the reference-feature time is the uncached one); writes
``benchmarks/results/raw/floor.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from diffkit.config.settings import Settings
from diffkit.eval.evaluate import Evaluator
from diffkit.eval.features import load_extractor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist,fashion-mnist")
    ap.add_argument("--n", default="1000,10000")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/raw/floor.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        settings = Settings(cache_dir=Path(cache))
        for dataset in args.datasets.split(","):
            ex = load_extractor("classifier", dataset, settings.runs_dir)
            t0 = time.perf_counter()
            ev = Evaluator(dataset, ex, settings)
            ref_seconds = time.perf_counter() - t0
            for n in map(int, args.n.split(",")):
                t0 = time.perf_counter()
                m = ev.floor(n)
                seconds = time.perf_counter() - t0
                timing = {"reference_seconds": ref_seconds, "floor_seconds": seconds}
                rows.append({"dataset": dataset, "n": n, "sha256": ex.digest, **timing, **m})
                print(
                    f"| {dataset} | {n} | {m['fid']:.3f} | {m['kid']:.4f} ± {m['kid_std']:.4f} | "
                    f"{m['is']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                    f"{ref_seconds:.1f} | {seconds:.1f} |",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"date": date.today().isoformat(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "results": rows}, indent=2) + "\n"
    )  # fmt: skip


if __name__ == "__main__":
    main()
