"""Batches per second of one dataset three ways, side by side in one process: in memory
(TensorBatches), memory-mapped in the main process (MappedBatches, 0 workers), and
memory-mapped with worker processes. Each reads two full epochs of shuffled batches as the
training loop does (uint8 gather, conversion to float in [-1, 1]) with no network, so the
numbers are the loaders' ceilings. The first epoch of the memory map may read from disk;
the second is from the page cache, as every epoch of a dataset smaller than RAM would be.

    python benchmarks/data_loading.py OUT_DIR [--n 20000] [--size 64] [--batch 128]

OUT_DIR receives a generated RGB image folder (random noise PNGs, a worst case for
compression and an irrelevant one for a loader of raw arrays) and its prepared arrays.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from diffkit.config.run import DataConfig
from diffkit.data.loader import TensorBatches
from diffkit.data.prepare import prepare
from diffkit.data.prepared import MappedBatches, load_prepared


def make_folder(folder: Path, n: int, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(2):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"class{i % 2}" / f"{i:06d}.png")


def epochs(batches, count: int = 2) -> list[float]:
    """Seconds of each epoch (every batch touched: a sum keeps the work from being skipped)."""
    out = []
    for e in range(count):
        start = time.perf_counter()
        total = 0.0
        for x, _ in batches.epoch(e):
            total += float(x[:, :, 0, 0].sum())
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    folder, prepared = args.out / "images", args.out / "prepared"
    if not folder.exists():
        make_folder(folder, args.n, args.size)
    cfg = DataConfig(dataset=f"folder:{folder}", image_size=args.size, channels=3)
    if not prepared.exists():
        start = time.perf_counter()
        prepare(cfg, Path("."), prepared)
        print(f"prepare: {args.n} images in {time.perf_counter() - start:.1f} s")
    cpu = torch.device("cpu")
    memory = load_prepared(prepared, "train", in_memory=True)
    mapped = load_prepared(prepared, "train", in_memory=False)
    mb = memory.images.numel() / 2**20
    print(f"{len(memory)} images of 3x{args.size}x{args.size} ({mb:.0f} MB), batch {args.batch}")
    runs = {
        "in memory (TensorBatches)": TensorBatches(memory, args.batch, seed=0, device=cpu),
        "memory map, 0 workers": MappedBatches(mapped, args.batch, seed=0, device=cpu, workers=0),
        "memory map, 1 worker": MappedBatches(mapped, args.batch, seed=0, device=cpu, workers=1),
        "memory map, 2 workers": MappedBatches(mapped, args.batch, seed=0, device=cpu, workers=2),
    }
    print("| loader | epoch 1 img/s | epoch 2 img/s |")
    print("|---|---|---|")
    for name, batches in runs.items():
        seconds = epochs(batches)
        images = len(batches) * args.batch
        print(f"| {name} | {images / seconds[0]:,.0f} | {images / seconds[1]:,.0f} |")


if __name__ == "__main__":
    main()
