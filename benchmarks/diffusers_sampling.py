"""A diffusers DDPM folder sampled by diffusers and by diffkit, side by side in one run.

    python benchmarks/diffusers_sampling.py [--folder DIR] [--n 8] [--threads 2]

Without ``--folder`` it saves a randomly initialised UNet2DModel with the architecture of
google/ddpm-cifar10-32 (35.7 M parameters, 3 x 32 x 32; nothing is downloaded) and a
DDPMScheduler (T = 1000, linear betas, leading spacing). Each setting draws the same
initial noise in both libraries: DDIM 50 steps (diffusers' DDIMPipeline, eta 0) and
DPM-Solver++(2M) 10 steps (diffusers' DPMSolverMultistepScheduler in the DDPMPipeline
loop, on the trailing grid both define alike). One untimed warm-up batch first; then
diffusers and diffkit alternate. Prints a markdown table with wall time per image and the
largest difference between the two outputs, and writes ``--json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from diffusers import (
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DModel,
)

import diffkit
from diffkit.methods.pipeline import SampleOptions


def cifar10_folder(path: Path) -> Path:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, layers_per_block=2,
        block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    )  # fmt: skip
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(1000)).save_pretrained(path)
    return path


def timed(fn):
    start = time.perf_counter()
    with torch.no_grad():
        out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path)
    ap.add_argument("--n", type=int, default=8, help="images per setting (one batch)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/raw/diffusers.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = args.folder or cifar10_folder(Path(tempfile.mkdtemp()) / "ddpm-cifar10-arch")

    theirs = DDPMPipeline.from_pretrained(folder)
    theirs.set_progress_bar_config(disable=True)
    ddim = DDIMPipeline(
        unet=theirs.unet, scheduler=DDIMScheduler.from_config(theirs.scheduler.config)
    )
    ddim.set_progress_bar_config(disable=True)
    dpm = DDPMPipeline(unet=theirs.unet, scheduler=DPMSolverMultistepScheduler.from_config(
        theirs.scheduler.config, algorithm_type="dpmsolver++", solver_order=2,
        final_sigmas_type="zero", timestep_spacing="trailing", lower_order_final=True))  # fmt: skip
    dpm.set_progress_bar_config(disable=True)
    ours = diffkit.load(folder)
    shape = (args.n, *ours.model.sample_shape)

    def diffusers_run(pipe, steps, **kw):
        g = torch.Generator().manual_seed(0)
        return pipe(batch_size=args.n, generator=g, num_inference_steps=steps, output_type="pt",
                    **kw).images * 2 - 1  # fmt: skip

    def diffkit_run(sampler, steps, **opts):
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        x, _ = ours.generate(noise, sampler, steps, opts=SampleOptions(**opts))
        return x.clamp(-1, 1)

    settings = [
        ("ddim", 50, lambda: diffusers_run(ddim, 50, eta=0.0, use_clipped_model_output=True),
         lambda: diffkit_run("ddim", 50)),
        ("dpm++2m", 10, lambda: diffusers_run(dpm, 10),
         lambda: diffkit_run("dpm++2m", 10, spacing="trailing", clip=False)),
    ]  # fmt: skip
    diffusers_run(ddim, 2)  # warm-up: allocator and kernels
    diffkit_run("ddim", 2)
    rows = []
    for name, steps, run_theirs, run_ours in settings:
        a, t_theirs = timed(run_theirs)
        b, t_ours = timed(run_ours)
        rows.append({"sampler": name, "steps": steps, "n": args.n,
                     "diffusers_s_per_image": t_theirs / args.n,
                     "diffkit_s_per_image": t_ours / args.n,
                     "max_abs_diff": float((a - b).abs().max())})  # fmt: skip
    params = sum(p.numel() for p in theirs.unet.parameters())
    report = {"date": str(date.today()), "machine": platform.processor() or platform.machine(),
              "threads": args.threads, "torch": torch.__version__, "parameters": params,
              "rows": rows}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print("| sampler | diffusers s/image | diffkit s/image | max abs diff |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['sampler']}-{r['steps']} | {r['diffusers_s_per_image']:.3f} | "
              f"{r['diffkit_s_per_image']:.3f} | {r['max_abs_diff']:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
