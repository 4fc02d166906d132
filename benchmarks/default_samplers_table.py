"""Tabulate benchmarks/default_samplers.sh: the runs' training cost and, per family, FID and
sampling time of every (sampler, steps) of its sweep, and the default each family takes by
the rule below. Writes benchmarks/results/17-default-samplers.json and prints the tables as
markdown.

    python benchmarks/default_samplers_table.py OUT [--date YYYY-MM-DD] [--machine TEXT]

The rule: a family's default is the fastest swept setting (sampling seconds per 1000 images)
whose FID is within 1.5x of the best FID any swept setting reached on that model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffkit.samplers import registry

RULE = 1.5
SUMMARY = Path(__file__).parent / "results" / "17-default-samplers.json"


def _sweep(out: Path, log: str) -> dict:
    """The sweep.json of the eval whose stdout is logs/LOG.out (its last line: the folder)."""
    folder = Path((out / "logs" / f"{log}.out").read_text().strip().splitlines()[-1])
    return json.loads((folder / "sweep.json").read_text())


def _nfe(sampler: str, steps: int) -> int:
    return registry.specs()[sampler].calls_per_step * steps  # type: ignore[operator]


def _rows(sweep: dict) -> tuple[list[list[str]], tuple[str, int]]:
    points = sweep["points"]
    best = min(p["metrics"]["fid"] for p in points)
    fitting = [p for p in points if p["metrics"]["fid"] <= RULE * best]
    pick = min(fitting, key=lambda p: p["wall_seconds"] / p["n"])
    rows = []
    for p in sorted(points, key=lambda p: (p["sampler"], p["steps"])):
        chosen = p is pick
        fid = f"{p['metrics']['fid']:.2f}"
        rows.append([
            f"**{p['sampler']}**" if chosen else p["sampler"], str(p["steps"]),
            str(_nfe(p["sampler"], p["steps"])), f"**{fid}**" if chosen else fid,
            f"{1000 * p['wall_seconds'] / p['n']:.1f}",
            "default" if chosen else ("within 1.5x" if p in fitting else ""),
        ])  # fmt: skip
    return rows, (pick["sampler"], pick["steps"])


def _training(out: Path, log: str) -> list[str]:
    run = Path((out / "logs" / f"{log}.out").read_text().strip().splitlines()[-1])
    summary = json.loads((run / "summary.json").read_text())
    wall = float((out / "logs" / f"{log}.wall").read_text())
    last = summary.get("test_accuracy")
    end = f"test accuracy {100 * last:.2f} %" if last is not None else (
        f"loss {summary['last_loss']:.4f}")  # fmt: skip
    return [
        log,
        f"{wall / 60:.1f} min",
        f"{summary['train_seconds']:.0f} s",
        f"{summary['images_per_sec']:.0f}",
        end,
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--date", required=True)
    ap.add_argument("--machine", required=True)
    args = ap.parse_args()
    out = args.out
    training = [_training(out, name) for name in ("classifier", "ddpm", "rf")]
    training[0][0] = "`diffkit train classifier --dataset mnist`"
    training[1][0] = "`diffkit train ddpm --preset small`"
    training[2][0] = "`diffkit train rf --preset small`"
    # the README's transcript: "64 images, ddpm 100 steps: 2.78 s (43.4 ms/image) on cpu"
    said = (out / "logs" / "sample-ddpm.err").read_text().strip().splitlines()[-1]
    seconds, per_image = said.split(": ", 1)[1].split(" (")
    sampled = [["`diffkit sample RUN --sampler ddpm --steps 100 -n 64`", "64", seconds,
                per_image.split(")")[0]]]  # fmt: skip
    ddpm, ddpm_pick = _rows(_sweep(out, "sweep-ddpm"))
    flow, flow_pick = _rows(_sweep(out, "sweep-rf"))
    sweep_columns = ["sampler", "steps", "network evaluations", "FID", "s / 1000 images", ""]
    summary = {
        "section": "17. Default samplers by quality per second",
        "doc": "docs/benchmarks.md",
        "machine": args.machine,
        "date": args.date,
        "command": [
            "DIFFKIT_DATA_DIR=../shared/data bash benchmarks/default_samplers.sh OUT",
            f"python benchmarks/default_samplers_table.py OUT --date {args.date} --machine '...'",
        ],
        "rule": f"the fastest swept setting whose FID is within {RULE}x of the best FID on "
        "that model",
        "defaults": {"ddpm": list(ddpm_pick), "flow": list(flow_pick)},
        "tables": [
            {
                "columns": ["run", "command wall", "training", "img/s", "at the end"],
                "rows": training,
            },
            {"columns": sweep_columns, "rows": ddpm},
            {"columns": sweep_columns, "rows": flow},
            {"columns": ["command", "images", "wall", "per image"], "rows": sampled},
        ],
    }
    SUMMARY.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    for table in summary["tables"]:
        cols = table["columns"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "---|" * len(cols))
        for r in table["rows"]:
            print("| " + " | ".join(r) + " |")
        print()
    print("defaults:", summary["defaults"])


if __name__ == "__main__":
    main()
