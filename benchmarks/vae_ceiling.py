"""How good can a latent model get? Score a VAE's reconstructions of real images.

    DIFFKIT_DATA_DIR=../shared/data DIFFKIT_RUNS_DIR=runs \
        python benchmarks/vae_ceiling.py runs/vae/<run> -n 1000

A latent DDPM samples the VAE's decoder, so its FID is bounded below by roughly the FID of
decoded posterior means of real images. This encodes ``n`` random training images (the same
images as the real-vs-real floor at this ``n`` and seed), decodes them, and prints the
metrics of the reconstructions beside that floor; the JSON goes to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffkit.config.settings import Settings
from diffkit.data.loader import to_unit_range
from diffkit.data.registry import load_dataset
from diffkit.eval.evaluate import Evaluator
from diffkit.eval.features import load_extractor
from diffkit.methods.vae import load_codec

KEYS = ("fid", "kid", "is", "precision", "recall")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vae", type=Path)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    settings = Settings()
    codec = load_codec(args.vae)
    data_cfg = codec.config.data
    evaluator = Evaluator(data_cfg.dataset,
                          load_extractor("classifier", data_cfg.dataset, settings.runs_dir),
                          settings, data=data_cfg, seed=args.seed)  # fmt: skip
    train = load_dataset(data_cfg, settings.data_dir, "train", download=settings.download)
    # The floor's selection: the same permutation as eval.reference.real_features.
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[: args.n]
    t0 = time.perf_counter()
    recon = codec.decode(codec.encode(to_unit_range(train.images[idx])))
    seconds = time.perf_counter() - t0
    scores = evaluator.score_images(recon)
    floor = evaluator.floor(args.n)
    report = {
        "vae": str(args.vae), "n": args.n, "seed": args.seed,
        "encode_decode_seconds": seconds, "reconstructions": scores, "floor": floor,
    }  # fmt: skip
    print("| images | " + " | ".join(KEYS) + " |")
    for name, m in (("VAE reconstructions", scores), ("real (floor)", floor)):
        print(f"| {name} | " + " | ".join(f"{m[k]:.4g}" for k in KEYS) + " |")
    out = args.out or args.vae / "eval" / "ceiling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(out)


if __name__ == "__main__":
    main()
