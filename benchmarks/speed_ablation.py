"""Training speed of UNet variants and kernel settings, side by side in one process.

    python benchmarks/speed_ablation.py --out benchmarks/results/raw/speed_ablation.json
    python benchmarks/speed_ablation.py --profile      # where the base network's step goes

Each row is one training step of the real loop's parts (objective, backward, AdamW, EMA)
on a synthetic MNIST-shaped batch, after two warm-up steps (compiled rows: four, until the
backward graph is built). The rows are timed round-robin, ``--steps`` steps each per
round, and each row keeps its median over ``--rounds`` rounds: this VM's host steals a
varying share of its time (top's ``st``), and interleaving spreads that over every row.
Forward FLOPs per image come from ``torch.utils.flop_counter``; training FLOPs are counted
as 3x the forward. The percentage is of the best square fp32 matmul, measured once per
round in the same process (median over rounds).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffkit.config import PRESETS, TrainConfig, UNetConfig
from diffkit.nn import build_model, count_parameters
from diffkit.objectives.ddpm import DDPMObjective
from diffkit.schedules import make_schedule
from diffkit.training.ema import EMA
from diffkit.training.optim import make_optimizer

SMALL = PRESETS["small"]["model"]
# name -> (UNet overrides of today's small preset, kernel settings)
VARIANTS: dict[str, tuple[dict, dict]] = {
    "small (today)": ({}, {"channels_last": True}),
    "small contiguous": ({}, {"channels_last": False}),
    "small compiled": ({}, {"channels_last": False, "compile": True}),
    "small 1 thread": ({}, {"channels_last": False, "threads": 1}),
    "no mid attention": ({"mid_attention": False}, {"channels_last": False}),
    "48-96": ({"base_channels": 48, "head_channels": 48}, {"channels_last": False}),
    "64-128 patch 4": ({"patch_size": 4, "base_channels": 64}, {"channels_last": False}),
    "64-128 patch 4 channels_last": ({"patch_size": 4, "base_channels": 64},
                                     {"channels_last": True}),
    "32-64 2 res blocks": ({"num_res_blocks": 2}, {"channels_last": False}),
    "48-96 2 res blocks": ({"base_channels": 48, "head_channels": 48, "num_res_blocks": 2},
                            {"channels_last": False}),
}  # fmt: skip


def matmul_peak(sizes: tuple[int, ...] = (512, 1024, 2048)) -> float:
    """Best fp32 FLOP/s of square matmuls over a few sizes."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def forward_flops(model: torch.nn.Module) -> int:
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))
    return counter.get_total_flops()


def train_step_fn(overrides: dict, channels_last: bool, compile: bool):
    """One training step of the small recipe on a fixed batch, and the model."""
    model = build_model(UNetConfig(**{**SMALL, **overrides}))
    tcfg = TrainConfig(**PRESETS["small"]["train"])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, ema = make_optimizer(model, tcfg), EMA(model, tcfg.ema_decay)
    net = torch.compile(model) if compile else model
    objective = DDPMObjective(make_schedule("linear"))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(tcfg.batch_size, 1, 28, 28) * 2 - 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    count = [0]

    def step() -> None:
        loss = objective(net, x, None, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model, count[0])
        count[0] += 1

    return step, model, tcfg.batch_size


def prepare(name: str) -> dict:
    """Build a variant's step and warm it up (compiled rows: until the backward is built)."""
    overrides, kernel = VARIANTS[name]
    threads = kernel.get("threads", torch.get_num_threads())
    with num_threads(threads):
        step, model, batch = train_step_fn(overrides, kernel["channels_last"],
                                           kernel.get("compile", False))  # fmt: skip
        t0 = time.perf_counter()
        for _ in range(4 if kernel.get("compile") else 2):
            step()
        warm = time.perf_counter() - t0
    flops = forward_flops(model)
    return {"variant": name, "overrides": overrides, **kernel, "threads": threads,
            "params": count_parameters(model), "fwd_mflop_per_img": flops / 1e6,
            "warmup_s": warm, "batch": batch, "step": step, "img_s": []}  # fmt: skip


class num_threads:
    def __init__(self, n: int) -> None:
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)


def time_round(row: dict, steps: int) -> None:
    """One timed round of ``steps`` steps; appends its img/s to the row."""
    with num_threads(row["threads"]):
        t0 = time.perf_counter()
        for _ in range(steps):
            row["step"]()
        row["img_s"].append(steps * row["batch"] / (time.perf_counter() - t0))


def profile(steps: int) -> None:
    """The top operators of the base network's training step (torch.profiler, CPU time)."""
    step, _, _ = train_step_fn({}, channels_last=False, compile=False)
    for _ in range(2):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=5, help="round-robin rounds; medians kept")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    ap.add_argument("--profile", action="store_true", help="only profile the base step")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/raw/speed_ablation.json"))
    args = ap.parse_args()
    if args.profile:
        profile(args.steps)
        return
    rows = [prepare(name) for name in args.variants.split(",")]
    peaks = []
    for _ in range(args.rounds):  # round-robin, so a slow spell of the VM hits every row
        peaks.append(matmul_peak())
        for row in rows:
            time_round(row, args.steps)
    peak = statistics.median(peaks)
    for row in rows:
        del row["step"]
        ips = statistics.median(row["img_s"])
        flops = row["fwd_mflop_per_img"] * 1e6
        row |= {"train_img_s": ips, "train_gflop_s": 3 * flops * ips / 1e9,
                "train_frac_peak": 3 * flops * ips / peak}  # fmt: skip
        print(json.dumps(row), flush=True)
    result = {"date": date.today().isoformat(), "machine": platform.processor() or
              platform.machine(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "matmul_peak_gflop_s": peak / 1e9, "matmul_peaks_gflop_s": [p / 1e9 for p in peaks],
              "steps": args.steps, "rounds": args.rounds, "rows": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    rounded = [round(p / 1e9) for p in peaks]
    print(f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s (median of {rounded})")
    print("| variant | params | fwd MFLOP/img | train img/s | GFLOP/s (% peak) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['params'] / 1e6:.2f} M | {r['fwd_mflop_per_img']:.0f} | "
              f"{r['train_img_s']:.0f} | {r['train_gflop_s']:.1f} "
              f"({100 * r['train_frac_peak']:.0f} %) |")  # fmt: skip


if __name__ == "__main__":
    main()
