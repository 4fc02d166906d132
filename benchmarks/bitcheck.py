"""Fingerprint a set of runs' samples, to show a refactor changed no sample bit.

    python benchmarks/bitcheck.py OUT.pt RUN [RUN ...]        # before, on the old commit
    python benchmarks/bitcheck.py OUT2.pt RUN [RUN ...]       # after
    python benchmarks/bitcheck.py --compare OUT.pt OUT2.pt

For every run: every sampler of its family at 7 steps (DDPM at T), seed 3, 6 images in
batches of 4 (so one batch is partial); a class-conditional run also with labels 0..5 at
guidance 3; a DDPM also DDIM eta 0.5 on a leading grid and fixed_large DDPM on a
linspace grid (seed 5, one batch). Works with both return types of ``Pipeline.sample``
(a Tensor in older versions, a SampleResult now).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from diffkit.methods.load import load_pipeline


def draw(pipe, **kw) -> torch.Tensor:
    out = pipe.sample(6, **({"seed": 3, "batch_size": 4} | kw))
    return out if isinstance(out, torch.Tensor) else out.images


def fingerprint(runs: list[Path]) -> dict[str, torch.Tensor]:
    out = {}
    for run in runs:
        pipe = load_pipeline(run)
        labels = torch.arange(6) if pipe.num_classes else None
        for s in pipe.SAMPLERS:
            steps = None if s == "ddpm" else 7
            out[f"{run.name}-{s}"] = draw(pipe, sampler=s, steps=steps)
            if labels is not None:
                out[f"{run.name}-{s}-g3"] = draw(pipe, sampler=s, steps=steps, labels=labels,
                                                 guidance=3.0)  # fmt: skip
        if "ddim" in pipe.SAMPLERS:
            one = {"seed": 5, "batch_size": 256}
            out[f"{run.name}-ddim-eta"] = draw(pipe, sampler="ddim", steps=9, eta=0.5,
                                               spacing="leading", **one)  # fmt: skip
            large = {"variance": "fixed_large", "spacing": "linspace"}
            out[f"{run.name}-ddpm-large"] = draw(pipe, sampler="ddpm", steps=10, **large, **one)
    return out


def main() -> None:
    if sys.argv[1] == "--compare":
        a, b = (torch.load(p) for p in sys.argv[2:4])
        differ = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
        print(f"{len(a)} outputs: " + ("bit-identical" if not differ else f"differ: {differ}"))
        sys.exit(1 if differ else 0)
    torch.save(fingerprint([Path(p) for p in sys.argv[2:]]), sys.argv[1])


if __name__ == "__main__":
    main()
