"""Train and sample throughput per preset and precision, with FLOPs and the matmul peak.

    python benchmarks/throughput.py --out benchmarks/results/raw/throughput.json

For every preset and precision: training img/s (forward + backward + AdamW + EMA, batch as
in the preset), sampling img/s (one no-grad network evaluation per image), forward FLOPs
per image (torch.utils.flop_counter), and achieved FLOP/s as a fraction of this machine's
measured dense-matmul peak in the same precision.
"""

from __future__ import annotations

import argparse
import json
import platform
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

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def matmul_peak(dtype: torch.dtype, sizes: tuple[int, ...] = (512, 1024, 2048)) -> float:
    """Best FLOP/s of square matmuls over a few sizes (the machine's practical dense peak)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        for _ in range(3):
            t0 = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def forward_flops(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, *shape), torch.zeros(1, dtype=torch.long))
    return counter.get_total_flops()


def train_ips(preset: str, dtype: torch.dtype | None, steps: int, channels_last: bool) -> float:
    cfg = UNetConfig(**PRESETS[preset]["model"])
    tcfg = TrainConfig(**PRESETS[preset]["train"])
    model = build_model(cfg)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, ema = make_optimizer(model, tcfg), EMA(model, tcfg.ema_decay)
    objective = DDPMObjective(make_schedule("linear"))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(tcfg.batch_size, 1, 28, 28) * 2 - 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            loss = objective(model, x, None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model, i)
    return steps * tcfg.batch_size / (time.perf_counter() - t0)


@torch.no_grad()
def sample_ips(preset: str, dtype: torch.dtype | None, batch: int, reps: int) -> float:
    model = build_model(UNetConfig(**PRESETS[preset]["model"])).eval()
    x, t = torch.randn(batch, 1, 28, 28), torch.full((batch,), 500)
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        model(x, t)
        t0 = time.perf_counter()
        for _ in range(reps):
            model(x, t)
    return reps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,small,default")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument(
        "--steps", type=int, default=10, help="timed training steps (default preset: 2)"
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/raw/throughput.json"))
    args = ap.parse_args()

    # Emulated bf16 (CPUs without AVX512-BF16/AMX) runs ~100x below fp32: keep its probe small.
    peaks = {
        p: matmul_peak(torch.float32)
        if p == "fp32"
        else matmul_peak(torch.bfloat16, sizes=(256, 512))
        for p in args.precisions.split(",")
    }
    rows = []
    for preset in args.presets.split(","):
        cfg = UNetConfig(**PRESETS[preset]["model"])
        flops = forward_flops(build_model(cfg), (1, 28, 28))
        fast_bf16 = peaks.get("bf16", 0) > peaks["fp32"] / 4
        for prec in args.precisions.split(","):
            dtype = DTYPES[prec]
            if preset == "default" and prec == "bf16" and not fast_bf16:
                continue  # emulated bf16 on the big model would take minutes for nothing
            slow = preset == "default" or (prec == "bf16" and not fast_bf16)
            steps = 2 if slow else args.steps
            for cl in (True, False) if prec == "fp32" else (True,):
                tr = train_ips(preset, dtype, steps, cl)
                sa = sample_ips(preset, dtype, 64 if slow else 256, 1 if slow else 3)
                rows.append(
                    {
                        "preset": preset,
                        "precision": prec,
                        "channels_last": cl,
                        "params": count_parameters(build_model(cfg)),
                        "fwd_mflop_per_img": flops / 1e6,
                        "train_img_s": tr,
                        "sample_img_s": sa,
                        "train_gflop_s": 3 * flops * tr / 1e9,
                        "sample_gflop_s": flops * sa / 1e9,
                        "train_frac_peak": 3 * flops * tr / peaks[prec],
                        "sample_frac_peak": flops * sa / peaks[prec],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    result = {
        "date": date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_peak_gflop_s": {k: v / 1e9 for k, v in peaks.items()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"peak GFLOP/s: { {k: round(v / 1e9, 1) for k, v in peaks.items()} }")
    print(
        "| preset | precision | channels_last | params | fwd MFLOP/img | train img/s | "
        "train GFLOP/s (% peak) | sample img/s | sample GFLOP/s (% peak) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['preset']} | {r['precision']} | {r['channels_last']} | {r['params'] / 1e6:.2f}M"
            f" | {r['fwd_mflop_per_img']:.0f} | {r['train_img_s']:.0f} | "
            f"{r['train_gflop_s']:.1f} ({100 * r['train_frac_peak']:.0f}%) | "
            f"{r['sample_img_s']:.0f} | {r['sample_gflop_s']:.1f} "
            f"({100 * r['sample_frac_peak']:.0f}%) |"
        )


if __name__ == "__main__":
    main()
