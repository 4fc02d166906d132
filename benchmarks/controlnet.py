"""ControlNet (Zhang et al. 2023, arXiv:2302.05543) on the small MNIST model, docs/benchmarks.md
section 11: training time, edge F1 against training steps, the hinted model against its floor
and ceiling, and an L1 reconstruction baseline (`--objective recon`).

    PYTHONPATH=. python benchmarks/controlnet.py BASE_RUN CLASSIFIER_RUN OUT_DIR

Run alone on the machine (it times training). Needs DIFFKIT_DATA_DIR. Writes into OUT_DIR:
``results.json`` (every number below), ``f1-vs-steps.png``, ``pairs-*.png`` grids and
``commands.txt`` (the CLI calls, in order).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

N_EVAL = 1000  # images per final evaluation
N_CURVE = 500  # images per point of the F1-vs-steps curve
CURVE = (0, 25, 50, 100, 150, 200, 300, 450, 650, 937)  # 937 = one epoch at batch 64


def cli(*args: object, log: list[str]) -> str:
    """Run ``diffkit ARGS`` and return its last stdout line (the path it printed)."""
    cmd = ["diffkit", *map(str, args)]
    log.append(" ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def metrics(path: str) -> dict:
    return json.loads(Path(path).read_text())["metrics"]


def summary(run: str) -> dict:
    return json.loads((Path(run) / "summary.json").read_text())


def evaluate(run: str, clf: str, log: list[str], n: int = N_EVAL, *extra: object) -> dict:
    out = cli("eval", run, "--hint", "mnist:test", "-n", n, "--classifier", clf, *extra, log=log)
    return metrics(out)


def row(m: dict) -> dict:
    e = m["edges"]
    return {"fid": m["fid"], "class_accuracy": m["class_accuracy"]["all"], "edge_f1": e["f1"],
            "edge_f1_exact": e["f1_exact"], "sobel_l1": e["sobel_l1"]}  # fmt: skip


def curve(base: str, clf: str, runs: str, log: list[str]) -> tuple[str, list[dict], float]:
    """Train one epoch in chunks (exact resume: the same run as one go), scoring edge F1
    after each; the training seconds are the summed in-loop times."""
    run, points, seconds = None, [], 0.0
    for steps in CURVE[1:]:
        if run is None:
            run = cli("train", "controlnet", "--base", base, "--max-steps", steps, "--name",
                      "canny", "--sample-every", "0", "--runs-dir", runs, log=log)  # fmt: skip
        else:
            cli("train", "controlnet", "--resume", run, "--max-steps", steps, log=log)
        seconds = summary(run)["train_seconds"]  # the loop's clock survives a resume
        m = evaluate(run, clf, log, N_CURVE, "--steps", 20)
        points.append({"step": steps, **row(m)})
        print(f"step {steps}: F1 {points[-1]['edge_f1']:.3f}  exact "
              f"{points[-1]['edge_f1_exact']:.3f}  FID {m['fid']:.2f}", flush=True)  # fmt: skip
    return run, points, seconds


def _hinted(run: str, n_hints: int, scale: float = 1.0):
    from diffkit.data.hints import load_hints
    from diffkit.methods.controlnet import Control, hinted_batch, with_control
    from diffkit.methods.load import load_pipeline

    pipe = with_control(load_pipeline(run), Control(scale=scale))
    hints = load_hints(f"mnist:test:0..{n_hints - 1}", (1, 28, 28), pipe.model.hint_config,
                       Path(os.environ["DIFFKIT_DATA_DIR"]))  # fmt: skip
    labels, cond, _ = hinted_batch(pipe, hints, n_hints)
    steps = min(pipe.model.default_steps("ddim"), 50)  # the recon baseline: its one step

    def draw(seed: int) -> torch.Tensor:
        return pipe.sample(n_hints, steps=steps, seed=seed, labels=labels, cond=cond).images

    return hints, draw


@torch.no_grad()
def diversity(run: str, n_hints: int = 32, seeds: int = 16, scale: float = 1.0) -> float:
    """Mean over pixels and hints of the pixel std across seeds, for the first test hints
    (DDIM-50, or the model's one step for the recon baseline)."""
    _, draw = _hinted(run, n_hints, scale)
    return float(torch.stack([draw(s) for s in range(seeds)]).std(dim=0).mean())


@torch.no_grad()
def pairs_grid(rows: list[tuple[str, float, int]], path: Path, n_hints: int = 16) -> None:
    """Row 0 the hints, then one row per (run, control scale, seed)."""
    from diffkit.runs.plots import save_grid

    hints, _ = _hinted(rows[0][0], n_hints)
    grid = [hints.maps * 2 - 1] + [_hinted(r, n_hints, c)[1](seed) for r, c, seed in rows]
    save_grid(torch.cat(grid), path, nrow=n_hints)


def real_floors(n: int = 10000) -> dict:
    """Edge F1 of real test digits against other digits' edges (random and same-class
    pairs); against their own edges it is 1 by construction."""
    from diffkit.config.run import DataConfig
    from diffkit.data.edges import edge_f1, edge_maps
    from diffkit.data.registry import load_dataset

    data = load_dataset(DataConfig(dataset="mnist"), Path(os.environ["DIFFKIT_DATA_DIR"]), "test")
    e, y = edge_maps(data.images[:n]), data.labels[:n]
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(n, generator=g)
    same = torch.empty(n, dtype=torch.long)
    for k in range(10):
        idx = (y == k).nonzero().flatten()
        same[idx] = idx[torch.randperm(len(idx), generator=g)]
    return {
        "random_pairs": {"f1": edge_f1(e, e[perm])[2], "f1_exact": edge_f1(e, e[perm], 0)[2]},
        "same_class_pairs": {"f1": edge_f1(e, e[same])[2], "f1_exact": edge_f1(e, e[same], 0)[2]},
        "own_edges": {"f1": edge_f1(e, e)[2], "f1_exact": edge_f1(e, e, 0)[2]},
    }


def plot(points: list[dict], path: Path) -> None:
    from diffkit.runs.plots import new_figure, save_figure

    fig, (ax, ax_fid) = new_figure(1, 2, figsize=(11, 4))
    steps = [p["step"] for p in points]
    ax.plot(steps, [p["edge_f1"] for p in points], "o-", label="edge F1 (1 px)")
    ax.plot(steps, [p["edge_f1_exact"] for p in points], "s-", label="edge F1 (exact)")
    ax.set(
        xlabel="training steps (batch 64)",
        ylabel="F1 vs the hint",
        ylim=(0, 1),
        title=f"ControlNet on the small MNIST DDPM: edge F1, {N_CURVE} DDIM-20 samples",
    )
    ax_fid.plot(steps, [p["fid"] for p in points], "o-")
    ax_fid.set(xlabel="training steps (batch 64)", ylabel="FID (own classifier)",
               title="FID of the same samples")  # fmt: skip
    for a in (ax, ax_fid):
        a.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def main(base: str, clf: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs = str(out / "runs")
    log: list[str] = []
    res: dict = {"date": time.strftime("%Y-%m-%d"), "base": base, "classifier": clf}
    res["real"] = real_floors()
    canny, points, seconds = curve(base, clf, runs, log)
    base_scale0 = evaluate(canny, clf, log, N_CURVE, "--steps", 20, "--control-scale", 0)
    points.insert(0, {"step": 0, **row(base_scale0)})
    res["curve"], res["train_seconds"] = points, seconds
    res["train_images_per_sec"] = summary(canny)["images_per_sec"]
    plot(points, out / "f1-vs-steps.png")
    sweep = cli("eval", canny, "--hint", "mnist:test", "-n", N_EVAL, "--classifier", clf,
                "--steps", 50, "--samplers", "ddim", "--sweep", "control_scale=0,0.5,1,1.5,2",
                log=log)  # fmt: skip
    res["scale_sweep"] = [
        {"control_scale": p["control_scale"], **row(p["metrics"])}
        for p in json.loads((Path(sweep) / "sweep.json").read_text())["points"]
    ]
    res["ddpm100"] = row(evaluate(canny, clf, log, N_EVAL, "--sampler", "ddpm", "--steps", 100))
    res["guess_w3"] = row(evaluate(canny, clf, log, N_EVAL, "--steps", 50, "--guidance", 3,
                                   "--guess-mode"))  # fmt: skip
    variants = {
        "sobel": ("--hint", "sobel"),
        "unlocked": ("--unlock-decoder",),
        "recon": ("--objective", "recon"),
    }
    res["variants"] = {}
    for name, flags in variants.items():
        run = cli("train", "controlnet", "--base", base, *flags, "--name", name,
                  "--runs-dir", runs, log=log)  # fmt: skip
        steps = () if name == "recon" else ("--steps", 50)
        res["variants"][name] = row(evaluate(run, clf, log, N_EVAL, *steps)) | {
            "train_seconds": summary(run)["train_seconds"], "diversity": diversity(run),
            "run": run}  # fmt: skip
    res["diversity"] = {"canny": diversity(canny), "base (scale 0)": diversity(canny, scale=0)}
    recon = res["variants"]["recon"]["run"]
    pairs_grid([(canny, 1.0, 0), (canny, 1.0, 1), (canny, 1.0, 2), (recon, 1.0, 0),
                (canny, 0.0, 0)], out / "hints-canny-recon-base.png")  # fmt: skip
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "commands.txt").write_text("\n".join(log) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
