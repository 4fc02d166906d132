"""The table of benchmarks/posthoc_ema.sh as markdown: one row per EMA (``online``, the
run's own; ``ema-D``, rebuilt by ``diffkit ema``), FID at each sampler setting, and the
largest weight difference of each rebuilt EMA from the online one.

    python benchmarks/posthoc_ema_table.py OUT RUN
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffkit.runs import load_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("run", type=Path)
    args = ap.parse_args()
    online = load_checkpoint(args.run / "checkpoints" / "last.safetensors").section("ema")
    rows = sorted((args.out / "eval").iterdir(), key=lambda p: (p.name != "online", p.name))
    cols = None
    for folder in rows:
        fids = {}
        for e in sorted(folder.glob("*.json")):
            rep = json.loads(e.read_text())
            tag = f"{rep['sampler']}-{rep['steps']}" + (
                f" {rep['spacing']}" if rep.get("spacing") else ""
            )
            fids[tag] = rep["metrics"]["fid"]
        if cols is None:
            cols = list(fids)
            print("| EMA | half-life (steps) | max abs diff from online | "
                  + " | ".join(f"FID {c}" for c in cols) + " |")  # fmt: skip
            print("|---" * (3 + len(cols)) + "|")
        if folder.name == "online":
            decay = json.loads((args.run / "config.json").read_text())["train"]["ema_decay"]
            name, diff = f"online ({decay:g})", "0"
        else:
            decay = float(folder.name.removeprefix("ema-"))
            rebuilt = load_checkpoint(args.run / "checkpoints" / f"{folder.name}.safetensors")
            ema = rebuilt.section("ema")
            diff = f"{max((ema[k] - online[k]).abs().max().item() for k in online):.2e}"
            name = folder.name
        half = f"{0.69 / (1 - decay):.0f}" if decay else "0"
        cells = [name, half, diff, *(f"{fids.get(c, float('nan')):.2f}" for c in cols)]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
