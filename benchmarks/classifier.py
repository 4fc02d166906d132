"""The feature classifier's fixed recipe on MNIST and Fashion-MNIST: accuracy and time.

    DIFFKIT_DATA_DIR=../shared/data DIFFKIT_RUNS_DIR=runs python benchmarks/classifier.py

Runs ``diffkit train classifier --dataset D`` for each dataset (a fresh run folder each) and
writes ``benchmarks/results/raw/classifier.json``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist,fashion-mnist")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/raw/classifier.json"))
    args = ap.parse_args()
    rows = []
    for dataset in args.datasets.split(","):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "diffkit.cli.app", "train", "classifier", "--dataset", dataset],
            check=True, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        run = Path(proc.stdout.strip().splitlines()[-1])
        summary = json.loads((run / "summary.json").read_text())
        rows.append({"dataset": dataset, "run": str(run), "wall_seconds": wall, **summary})
        print(
            f"| {dataset} | {100 * summary['test_accuracy']:.2f} % | {summary['steps']} | "
            f"{summary['train_seconds']:.0f} s | {summary['images_per_sec']:.0f} | "
            f"{summary['sha256'][:16]} |",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "date": date.today().isoformat(),
                "machine": platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
