"""Wall time per image of every `diffkit edit` op on the tiny IF-shaped pipeline of the
tests (random weights: this measures the loops' overhead around the UNet, not image
quality), next to diffusers' IFPipeline on the same model in the same run.

    PYTHONPATH=. python benchmarks/if_tiny.py [--n 4] [--threads 2]   # reuses the tests' builders

Stage I is 16 x 16 and stage II 32 x 32 here (IF's are 64 and 256), so the numbers say how
much diffkit adds per step, not how long IF takes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from diffkit.edit.compose import anagram, factorized, with_guidance
from diffkit.edit.filters import highpass, lowpass
from diffkit.edit.loops import inpaint, sdedit
from diffkit.edit.views import VIEWS
from diffkit.external.diffusers import load_diffusers, upscale_condition
from tests.external.test_deepfloyd import embeddings, stage_one, stage_two

CPU = torch.device("cpu")
STEPS = 100  # IF stage I's default
W = 7.0


def timed(fn: Callable[[], object], n: int, repeats: int = 3) -> float:
    """Best of ``repeats`` wall times of ``fn``, per image (ms)."""
    fn()  # warm-up
    best = min(_once(fn) for _ in range(repeats))
    return 1000 * best / n


def _once(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = args.n
    root = Path(tempfile.mkdtemp())
    stage_one().save_pretrained(root / "s1")
    stage_two().save_pretrained(root / "s2")
    import diffusers

    ref = diffusers.IFPipeline.from_pretrained(root / "s1")
    ref.set_progress_bar_config(disable=True)
    text, empty = embeddings(ref, "a photo of a man")
    pipe = load_diffusers(root / "s1", CPU, cache_dir=root / "cache")
    model = pipe.model
    c1, c2 = (model.prompts.embed([p] * n) for p in ("an old man", "people around a campfire"))
    guided = with_guidance(model.raw, model.unconditional, W)
    image = torch.rand(n, 3, 16, 16) * 2 - 1
    box = torch.zeros(1, 1, 16, 16)
    box[..., :8, :] = 1

    def run(net, steps: int = STEPS) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, 3, 16, 16, generator=g)
        pipe.integrate(net, x, "ddpm", steps, pipe.options("ddpm", {}), g, None)

    up = load_diffusers(root / "s2", CPU, cache_dir=root / "cache")

    def upscale() -> None:
        g = torch.Generator().manual_seed(0)
        cond = upscale_condition(up.model, image, c1, torch.randn(n, 3, 32, 32, generator=g))
        up.generate(torch.randn(n, 3, 32, 32, generator=g), "ddpm", 50, cond=cond,
                    guidance=4.0, generator=g)  # fmt: skip

    rows = {
        "diffusers IFPipeline, 100 steps": lambda: ref(
            prompt_embeds=text.expand(n, -1, -1), negative_prompt_embeds=empty.expand(n, -1, -1),
            num_inference_steps=STEPS, guidance_scale=W, output_type="pt"),
        "edit sample (ddpm, 100 steps)": lambda: run(pipe.network(c1, W)),
        "edit anagram, 2 views": lambda: run(anagram(guided, [c1, c2],
                                                     [VIEWS["identity"], VIEWS["rot180"]])),
        "edit hybrid": lambda: run(factorized(guided, [c1, c2],
                                              [lowpass(2.0, 9), highpass(2.0, 9)])),
        "edit sdedit, start 10 of 30": lambda: sdedit(pipe, image, 10, sampler="ddpm", steps=30,
                                                      cond=c1, guidance=W),
        "edit inpaint, 100 steps": lambda: inpaint(pipe, image, box, sampler="ddpm", steps=STEPS,
                                                   cond=c1, guidance=W),
        "stage II upscale, 50 steps (32 px)": upscale,
    }  # fmt: skip
    print(f"tiny IF-shaped pipeline, {n} images per call, {args.threads} threads, best of 3")
    print("| op | ms per image |\n|---|---|")
    for name, fn in rows.items():
        print(f"| {name} | {timed(fn, n):.1f} |")


if __name__ == "__main__":
    main()
