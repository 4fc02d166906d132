"""Start-up time and memory of the CLI: `diffkit --help`, `--version`, `runs` and a few
commands' `--help`, each in a fresh process (best of 5), plus `import torch` for scale.

    python benchmarks/startup.py
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

CALLS = [
    ["--help"],
    ["--version"],
    ["runs"],
    ["train", "ddpm", "--help"],
    ["sample", "--help"],
    ["eval", "--help"],
    ["edit", "anagram", "--help"],
    ["denoise-bench", "--help"],
]


def timed(argv: list[str]) -> tuple[float, float]:
    """(best wall seconds of 5, peak RSS in MB) of a fresh process. ru_maxrss of children
    is the largest so far, so commands run before the (larger) torch import read right."""
    best = float("inf")
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return best, max(peak, before) / 1024


if __name__ == "__main__":
    exe = [sys.executable, "-m", "diffkit.cli.entry"]
    print("| command | best of 5 (s) | peak RSS (MB) |\n|---|---|---|")
    for call in CALLS:
        s, mb = timed(exe + call)
        print(f"| `diffkit {' '.join(call)}` | {s:.2f} | {mb:.0f} |")
    s, mb = timed([sys.executable, "-c", "import torch"])
    print(f"| `python -c 'import torch'` (for scale) | {s:.2f} | {mb:.0f} |")
