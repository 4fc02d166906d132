"""The ablation table of benchmarks/time_to_quality.sh as markdown.

    python benchmarks/ttq_table.py OUT [--peak-json benchmarks/results/16.1-speed-ablation.json]

One row per trained run in ``OUT/runs.txt``: training wall time and img/s (the run's
summary.json), % of the fp32 matmul peak (3x the forward FLOPs of the run's own network
per image; the peak from the speed benchmark's JSON), the host's stolen CPU share during
training (mean ``st`` of the row's vmstat log), the final loss, and FID at each of the
three sampler settings scored for it (``OUT/eval/ROW/*.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffkit.config.model import UNetConfig
from diffkit.nn import build_model


def forward_flops(model_cfg: dict) -> float:
    cfg = UNetConfig(**model_cfg)
    model = build_model(cfg)
    x = torch.randn(1, cfg.in_channels, cfg.image_size, cfg.image_size)
    with FlopCounterMode(display=False) as counter:
        model(x, torch.zeros(1))
    return counter.get_total_flops()


def stolen(vmstat: Path) -> float | None:
    """Mean ``st`` (% of CPU time the host took) over a vmstat log; None without one."""
    if not vmstat.exists():
        return None
    lines = vmstat.read_text().splitlines()
    head = next((ln.split() for ln in lines if ln.split()[:1] == ["r"]), None)
    if head is None:
        return None
    rows = [ln.split() for ln in lines if ln.split()[:1] and ln.split()[0].isdigit()]
    vals = [float(r[head.index("st")]) for r in rows[1:]]  # the first line is since boot
    return statistics.mean(vals) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--peak-json", type=Path,
                    default=Path("benchmarks/results/16.1-speed-ablation.json"))  # fmt: skip
    args = ap.parse_args()
    peak = json.loads(args.peak_json.read_text())["matmul_peak_gflop_s"] * 1e9
    print(f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s ({args.peak_json})\n")
    cols = None
    lines = []
    for entry in (args.out / "runs.txt").read_text().splitlines():
        row, run = entry.split(maxsplit=1)
        run = Path(run)
        summary = json.loads((run / "summary.json").read_text())
        cfg = json.loads((run / "config.json").read_text())
        flops = forward_flops(cfg["model"])
        ips = summary["images_per_sec"]
        evals = sorted((args.out / "eval" / row).glob("*.json"))
        fids = []
        for e in evals:
            rep = json.loads(e.read_text())
            tag = f"{rep['sampler']}-{rep['steps']}" + (
                f" {rep['spacing']}" if rep.get("spacing") else ""
            )
            fids.append((tag, rep["metrics"]["fid"], rep["nfe"]))
        if cols is None:
            cols = [t for t, _, _ in fids]
            print("| row | steps | train s | img/s | % peak | st % | loss | "
                  + " | ".join(f"FID {c}" for c in cols) + " |")  # fmt: skip
            print("|---" * (7 + len(cols)) + "|")
        st = stolen(args.out / "logs" / f"{row}-vmstat.log")
        cells = [row, str(summary["steps"]), f"{summary['train_seconds']:.0f}", f"{ips:.0f}",
                 f"{100 * 3 * flops * ips / peak:.0f}", "-" if st is None else f"{st:.0f}",
                 f"{summary['last_loss']:.4f}", *(f"{f:.2f}" + ("" if t == c else f" ({t})")
                   for (t, f, _), c in zip(fids, cols, strict=False))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
        print(lines[-1])


if __name__ == "__main__":
    main()
