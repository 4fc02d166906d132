"""Tabulate benchmarks/few_step.sh: FID and sampling time against network evaluations for
the `small` DDPM and flow, their solvers and their consistency students, the students'
training cost beside their teachers', and autoguidance with a guidance interval. Writes
benchmarks/results/20-few-step.json, docs/img/few-step-fid.png (FID against evaluations)
and docs/img/few-step-grid.png (the same noise through every method), and prints the
tables as markdown.

    python benchmarks/few_step_table.py OUT DDPM_RUN FLOW_RUN --date YYYY-MM-DD --machine TEXT
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diffkit.methods.load import load_pipeline
from diffkit.runs.plots import new_figure, save_figure, ticks_at
from diffkit.samplers import registry

ROOT = Path(__file__).parent.parent
SUMMARY = ROOT / "benchmarks" / "results" / "20-few-step.json"
PLOT = ROOT / "docs" / "img" / "few-step-fid.png"
GRID = ROOT / "docs" / "img" / "few-step-grid.png"
STUDENTS = {"cd-ddpm": ("DDPM", "CD student"), "ect-ddpm": ("DDPM", "ECT student"),
            "cd-rf": ("flow", "CD student"), "ect-rf": ("flow", "ECT student")}  # fmt: skip


def _last(out: Path, log: str) -> Path:
    return Path((out / "logs" / f"{log}.out").read_text().strip().splitlines()[-1])


def _sweep(out: Path, log: str) -> list[dict]:
    return json.loads((_last(out, log) / "sweep.json").read_text())["points"]


def _nfe(sampler: str, steps: int) -> int:
    return registry.specs()[sampler].calls_per_step * steps  # type: ignore[operator]


def _curves(out: Path) -> dict[tuple[str, str], list[tuple[int, float, float]]]:
    """(model, method) -> [(evaluations, FID, s / 1000 images)] in evaluation order."""
    logs = {("DDPM", "teacher dpm++2m"): ("eval-ddpm", "dpm++2m"),
            ("DDPM", "teacher unipc"): ("eval-ddpm", "unipc"),
            ("DDPM", "teacher ddpm (ancestral)"): ("eval-ddpm-100", "ddpm"),
            ("DDPM", "teacher dpm++2m-100"): ("eval-ddpm-100", "dpm++2m"),
            ("flow", "teacher euler"): ("eval-rf", "euler"),
            ("flow", "teacher heun"): ("eval-rf-heun", "heun")}  # fmt: skip
    for log, (model, method) in STUDENTS.items():
        own = "ddim" if model == "DDPM" else "euler"
        logs[(model, f"{method}, {own}")] = (f"eval-{log}", own)
        logs[(model, f"{method}, consistency")] = (f"eval-{log}", "consistency")
    curves = {}
    for key, (log, sampler) in logs.items():
        points = [p for p in _sweep(out, log) if p["sampler"] == sampler]
        curves[key] = sorted((_nfe(sampler, p["steps"]), p["metrics"]["fid"],
                              1000 * p["wall_seconds"] / p["n"]) for p in points)  # fmt: skip
    dpm100 = curves.pop(("DDPM", "teacher dpm++2m-100"))
    curves[("DDPM", "teacher dpm++2m")] += dpm100
    return curves


def _training(out: Path, ddpm: Path, rf: Path) -> list[list[str]]:
    rows = []
    for run, name in ((ddpm, "DDPM"), (rf, "flow")):
        s = json.loads((run / "summary.json").read_text())
        rows.append([f"{name} teacher (`train --preset small`)", str(s["steps"]),
                     f"{s['train_seconds'] / 60:.1f}", "1.00"])  # fmt: skip
        teacher = s["train_seconds"]
        for log, (model, method) in STUDENTS.items():
            if model != name:
                continue
            student = json.loads((_last(out, log) / "summary.json").read_text())
            wall = float((out / "logs" / f"{log}.wall").read_text())
            rows.append([f"{name} {method}", str(student["steps"]), f"{wall / 60:.1f}",
                         f"{wall / teacher:.2f}"])  # fmt: skip
    return rows


def _guidance(out: Path, ddpm: Path) -> list[list[str]]:
    """Autoguidance rows: band, w, network evaluations (guided steps count two), FID, time."""
    pipe = load_pipeline(ddpm)
    rows = []
    for band in ("all", "0.3:5", "1:10"):
        for p in _sweep(out, f"ag-{band.replace(':', '-')}"):
            steps = p["steps"]
            if band == "all":
                inside = steps
            else:
                lo, hi = (float(v) for v in band.split(":"))
                sigma = pipe.noise_level(pipe.timesteps(steps, None))
                inside = int(((sigma > lo) & (sigma <= hi)).sum())
            rows.append([band if band != "all" else "every step", f"{p['guidance']:g}",
                         str(steps + inside), f"{p['metrics']['fid']:.2f}",
                         f"{1000 * p['wall_seconds'] / p['n']:.1f}"])  # fmt: skip
    return rows


def _plot(curves: dict, best: dict[str, float]) -> None:
    fig, axes = new_figure(1, 2, figsize=(11, 4.2))
    for ax, model in zip(axes, ("DDPM", "flow"), strict=True):
        nfes = set()
        for (m, method), pts in curves.items():
            if m != model:
                continue
            style = "o-" if "student" in method else "s--"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=method)
            nfes |= {p[0] for p in pts}
        ax.axhline(best[model], color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ticks_at(ax, sorted(nfes))
        ax.set_xlabel("network evaluations")
        ax.set_ylabel("FID (n = 1000, own MNIST features)")
        ax.set_title(f"small {model}: teacher's best {best[model]:.2f} (dotted)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, PLOT)


def _grid(out: Path, ddpm: Path, rf: Path) -> None:
    """Eight images from the same seed through each method, one row per method."""
    from PIL import Image, ImageDraw

    cd, ect = _last(out, "cd-ddpm"), _last(out, "ect-ddpm")
    rcd, rect = _last(out, "cd-rf"), _last(out, "ect-rf")
    rows = [
        (ddpm, "ddpm", 100, "DDPM ancestral, 100"),
        (ddpm, "dpm++2m", 10, "DPM-Solver++, 10"),
        (ddpm, "dpm++2m", 2, "DPM-Solver++, 2"),
        (cd, "ddim", 1, "DDPM CD student, 1"),
        (cd, "ddim", 2, "DDPM CD student, 2"),
        (cd, "consistency", 2, "DDPM CD, consistency 2"),
        (ect, "ddim", 2, "DDPM ECT student, 2"),
        (rf, "euler", 100, "flow Euler, 100"),
        (rf, "euler", 2, "flow Euler, 2"),
        (rcd, "consistency", 1, "flow CD student, 1"),
        (rcd, "consistency", 2, "flow CD student, 2"),
        (rect, "consistency", 2, "flow ECT student, 2"),
        (rect, "consistency", 4, "flow ECT student, 4"),
    ]
    n, cell, label = 8, 56, 170
    sheet = Image.new("L", (label + n * cell, len(rows) * cell), 255)
    draw = ImageDraw.Draw(sheet)
    for r, (src, sampler, steps, name) in enumerate(rows):
        images = load_pipeline(src).sample(n, sampler=sampler, steps=steps, seed=0,
                                           progress=False).images  # fmt: skip
        for c, img in enumerate(images):
            pixels = ((img[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
            tile = Image.fromarray(pixels, "L").resize((cell - 4, cell - 4), Image.NEAREST)
            sheet.paste(tile, (label + c * cell + 2, r * cell + 2))
        draw.text((6, r * cell + cell // 2 - 6), name, fill=0)
    sheet.save(GRID)


def _md(cols: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("ddpm", type=Path)
    ap.add_argument("rf", type=Path)
    ap.add_argument("--date", required=True)
    ap.add_argument("--machine", required=True)
    args = ap.parse_args()
    curves = _curves(args.out)
    best = {m: min(f for (mm, method), pts in curves.items()  # the teacher's best, any solver
                   if mm == m and method.startswith("teacher") for _, f, _ in pts)
            for m in ("DDPM", "flow")}  # fmt: skip
    fid_rows = [[model, method, str(nfe), f"{fid:.2f}", f"{fid / best[model]:.2f}", f"{ms:.1f}"]
                for (model, method), pts in curves.items() for nfe, fid, ms in pts]  # fmt: skip
    summary = {
        "section": "20. Few-step generation: consistency students, solvers, guidance interval",
        "doc": "docs/benchmarks.md",
        "machine": args.machine,
        "date": args.date,
        "command": [
            "DIFFKIT_DATA_DIR=../shared/data bash benchmarks/few_step.sh OUT DDPM_RUN FLOW_RUN",
            f"python benchmarks/few_step_table.py OUT DDPM_RUN FLOW_RUN --date {args.date} "
            "--machine '...'",
        ],
        "teacher_best": best,
        "tables": [
            {
                "columns": [
                    "model",
                    "method",
                    "network evaluations",
                    "FID",
                    "x teacher's best",
                    "s / 1000 images",
                ],
                "rows": fid_rows,
            },
            {
                "columns": ["run", "optimizer steps", "wall minutes (2 cores)", "x teacher"],
                "rows": _training(args.out, args.ddpm, args.rf),
            },
            {
                "columns": [
                    "guidance interval (sigma)",
                    "w",
                    "network evaluations",
                    "FID",
                    "s / 1000 images",
                ],
                "rows": _guidance(args.out, args.ddpm),
            },
        ],
    }
    SUMMARY.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    _plot(curves, best)
    _grid(args.out, args.ddpm, args.rf)
    for table in summary["tables"]:
        print(_md(table["columns"], table["rows"]) + "\n")
    print("best:", best)


if __name__ == "__main__":
    main()
