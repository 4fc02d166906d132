"""The tables the commands print, as text: a title, column names and rows of cells, so
that a notebook can show what the CLI shows from the same result."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from diffkit.app.bench import BenchResult
    from diffkit.app.evaluate import EvalResult, SweepResult
    from diffkit.eval.sweep import SweepPoint


class Table(NamedTuple):
    title: str
    columns: list[str]
    rows: list[list[Any]]


def eval_table(source: Path, result: EvalResult) -> Table:
    """``diffkit eval``'s metrics beside the real-vs-real floor."""
    r = result.report
    what, column = ("reconstructions",) * 2 if result.reconstructions else ("images", "samples")
    title = f"{source.name}: {r['n']} {what} vs {r['dataset']} test ({r['features']})"
    return Table(title, ["metric", column, "real floor"], _rows(r["metrics"], r["floor"]))


def _rows(metrics: dict[str, Any], floor: dict[str, Any] | None) -> list[list[str]]:
    def fmt(m: dict[str, Any] | None, key: str) -> str:
        if m is None or key not in m:
            return "-"
        if key == "kid":
            return f"{m[key]:.4g} ± {m[key + '_std']:.2g}"
        if key == "is":
            return f"{m[key]:.3f} ± {m[key + '_std']:.3f}"
        return f"{m[key]:.4f}" if key in ("precision", "recall") else f"{m[key]:.3f}"

    names = {"fid": "FID", "kid": "KID", "is": "IS", "precision": "precision",
             "recall": "recall"}  # fmt: skip
    rows = [[label, fmt(metrics, k), fmt(floor, k)] for k, label in names.items()]
    for key, label in (("recon_mse", "reconstruction MSE"), ("psnr", "PSNR (dB)")):
        if key in metrics:
            rows.append([label, f"{metrics[key]:.4g}", "-"])

    def spread(m: dict[str, Any] | None) -> str:
        return "-" if m is None else f"{m['mean']:.4f} ± {m['std']:.3f}"

    for key, label in (("lpips_diversity", "LPIPS diversity"), ("lpips", "LPIPS to input")):
        if key in metrics:
            rows.append([label, spread(metrics[key]), spread((floor or {}).get(key))])
    for cls, acc in metrics.get("class_accuracy", {}).items():
        rows.append([f"class accuracy [{cls}]", f"{acc:.4f}", "-"])
    edges = metrics.get("edges", {})
    for key, label in (("f1", "edge F1 (1 px)"), ("f1_exact", "edge F1 (exact)"),
                       ("precision", "edge precision"),
                       ("recall", "edge recall"), ("sobel_l1", "Sobel L1")):  # fmt: skip
        if key in edges:
            rows.append([label, f"{edges[key]:.4f}", "-"])
    return rows


def _acc(m: dict[str, Any]) -> str:
    return f"{m['class_accuracy']['all']:.3f}" if "class_accuracy" in m else "-"


def sweep_table(result: SweepResult) -> Table:
    """A sweep of ``diffkit eval``: one row per point, then the real floor."""
    edges, floor = result.edges, result.report["floor"]

    def row(p: SweepPoint) -> list:
        m = p.metrics
        return [p.sampler, p.steps, "-" if p.guidance is None else f"{p.guidance:g}",
                *([f"{p.control_scale:g}", f"{m['edges']['f1']:.3f}"] if edges else []),
                f"{m['fid']:.3f}", f"{m['kid']:.4g}", f"{m['is']:.3f}",
                f"{m['precision']:.3f}", f"{m['recall']:.3f}", _acc(m),
                f"{p.wall_seconds:.2f}", f"{p.ms_per_image:.2f}"]  # fmt: skip

    rows = [row(p) for p in result.points]
    rows.append(["real floor", "-", "-", *(["-", "-"] if edges else []), f"{floor['fid']:.3f}",
                 f"{floor['kid']:.4g}", f"{floor['is']:.3f}", f"{floor['precision']:.3f}",
                 f"{floor['recall']:.3f}", "-", "-", "-"])  # fmt: skip
    return Table(
        f"sweep: {result.report['n']} images per point vs {result.report['dataset']} test",
        ["sampler", "steps", "w", *(["control", "edge F1"] if edges else []), "FID", "KID",
         "IS", "precision", "recall", "class acc", "seconds", "ms/img"],
        rows,
    )  # fmt: skip


def cache_bench_table(result: BenchResult) -> Table:
    """``diffkit cache-bench``: one row per configuration."""
    r, cache = result.report, result.report["cache"]
    return Table(
        f"DeepCache on {r['sampler']}-{r['steps']}: {r['n']} images, branch {cache['branch']}, "
        f"{cache['schedule']} schedule, {cache['mode']} features",
        ["config", "steps", "full/calls", "seconds", "speedup", "GMAC/img", "MAC ratio",
         "MSE", "FID", "KID"],
        [_bench_row(p) for p in result.points],
    )  # fmt: skip


def _bench_row(p) -> list[str]:
    m = p.metrics or {}
    fid = f"{m['fid']:.3f}" if "fid" in m else "-"
    kid = f"{m['kid']:.4g}" if "kid" in m else "-"
    return [p.label, str(p.steps), f"{p.full_nfe:g}/{p.nfe:g}", f"{p.seconds:.2f}",
            f"{p.speedup:.2f}x", f"{p.macs / 1e9:.3f}", f"{p.mac_ratio:.2f}x", f"{p.mse:.3g}",
            fid, kid]  # fmt: skip


def denoise_bench_table(result: BenchResult) -> Table:
    """``diffkit denoise-bench``: PSNR per model (rows) and noise level (columns)."""
    r, points = result.report, result.points
    names = list(dict.fromkeys(p.model for p in points))
    table = [[m] + [f"{p.psnr:.2f}" for p in points if p.model == m] for m in names]
    return Table(f"PSNR (dB), {r['n']} {r['dataset']} test images",
                 ["model", *(f"σ={s:g}" for s in r["sigmas"])], table)  # fmt: skip
