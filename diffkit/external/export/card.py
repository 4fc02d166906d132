"""The model card (``README.md``) of an export: what the model is, how to load it, how it
was trained and how well it scored (``metrics.jsonl`` eval records, ``summary.json``), and
the run's full config."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffkit.methods.pipeline import Pipeline

KIND = {"ddpm": "DDPM", "ldm": "latent DDPM", "rf": "rectified flow"}
SKIPPED = {"event", "step", "epoch", "best"}  # eval-record keys that are not scores
SUMMARY = (("steps", "steps"), ("epochs", "epochs"), ("last_loss", "last loss"),
           ("train_seconds", "training seconds"), ("images_per_sec", "images / s"),
           ("device", "device"), ("precision", "precision"), ("reason", "stopped"))  # fmt: skip


def write_card(path: Path, pipe: Pipeline, file: Path, meta: dict[str, Any]) -> None:
    """Write the card for ``pipe`` (loaded from the checkpoint ``file``)."""
    from diffkit.runs.layout import RunDir, atomic_write_bytes, run_folder_of

    run = RunDir(run_folder_of(file))
    sections = [_front_matter(pipe), _intro(pipe, meta), _usage(pipe),
                _model(pipe), _training(run), _metrics(run), _config(pipe)]  # fmt: skip
    atomic_write_bytes(path, ("\n\n".join(sections) + "\n").encode())


def eval_scores(records: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict | None]:
    """(the latest eval record, the one with the lowest FID) of a run's metrics."""
    evals = [r for r in records if r.get("event") == "eval"]
    scored = [r for r in evals if _finite(r.get("fid"))]
    return (evals[-1] if evals else None), (min(scored, key=lambda r: r["fid"]) if scored
                                            else None)  # fmt: skip


def _front_matter(pipe: Pipeline) -> str:
    cfg = pipe.config
    assert cfg is not None
    tags = ["diffkit", pipe.DIFFUSERS_TAG]
    tags += ["latent-diffusion"] if cfg.latent is not None else []
    tags += ["class-conditional"] if cfg.num_classes else []
    lines = ["---", "library_name: diffusers"]
    if not cfg.num_classes:
        lines.append("pipeline_tag: unconditional-image-generation")
    if re.fullmatch(r"[\w.-]+", cfg.data.dataset):  # a registry name, not folder:PATH
        tags.append(cfg.data.dataset)
    lines += ["tags:", *(f"- {t}" for t in tags), "---"]
    return "\n".join(lines)


def _intro(pipe: Pipeline, meta: dict[str, Any]) -> str:
    cfg = pipe.config
    assert cfg is not None
    weights = "EMA" if meta["weights"] == "ema" else "raw (not EMA)"
    return (f"# {cfg.name}: a diffkit {KIND[cfg.method]} on {cfg.data.dataset}\n\n"
            f"Trained with diffkit and exported by `diffkit export` (diffkit "
            f"{meta['version']}): the {weights} weights of `{meta['checkpoint']}`.\n\n"
            "![samples](samples.png)")  # fmt: skip


def _usage(pipe: Pipeline) -> str:
    k, (steps, after_loading) = pipe.num_classes, pipe.card_usage()
    call = (f"pipe(class_labels=list(range({k})), guidance_scale=2.0{steps}, generator=g)"
            if k else f"pipe(batch_size=16{steps}, generator=g)")  # fmt: skip
    code = ["import torch", "from diffusers import DiffusionPipeline", "",
            'pipe = DiffusionPipeline.from_pretrained("path/to/this/folder", '
            "trust_remote_code=True)"]  # fmt: skip
    code += after_loading
    code += ["g = torch.Generator().manual_seed(0)", f"images = {call}.images  # PIL images"]
    needs = ("`trust_remote_code=True` runs `pipeline_diffkit.py` (the `DiffkitPipeline`: "
             "class labels and guidance, latents decoded by `vae/`, flows on diffkit's "
             "uniform time grid) and `unet/modeling_diffkit.py` (diffkit's own network code "
             "with the diffusers wrapper). They need torch and diffusers, not "
             "diffkit.")  # fmt: skip
    return "## Use\n\n```python\n" + "\n".join(code) + "\n```\n\n" + needs


def _model(pipe: Pipeline) -> str:
    cfg, model = pipe.config, pipe.model
    assert cfg is not None
    params = sum(p.numel() for p in model.net.parameters())
    rows = [("method", cfg.method), ("network", f"{cfg.model.kind}, {params:,} parameters"),
            ("sample shape", " x ".join(map(str, model.sample_shape))),
            ("classes", str(cfg.num_classes) if cfg.num_classes else "unconditional"),
            ("pipeline", "DiffkitPipeline (pipeline_diffkit.py)")]  # fmt: skip
    rows += pipe.card_rows()
    if cfg.latent is not None:
        rows.append(("autoencoder", f"{cfg.latent.vae.model.latent} VAE, latents "
                     f"(z - {cfg.latent.shift:.4g}) * {cfg.latent.scale:.4g}"))  # fmt: skip
    return "## Model\n\n" + _table(["", ""], rows)


def _training(run: Any) -> str:
    summary = _read_json(run.summary)
    if not summary:
        return (
            "## Training\n\nNo summary.json (the run is unfinished, or this checkpoint "
            "was exported away from its run folder)."
        )
    rows = [(label, _fmt(summary[key])) for key, label in SUMMARY if key in summary]
    return "## Training\n\n" + _table(["", ""], rows)


def _metrics(run: Any) -> str:
    from diffkit.runs.metrics import read_metrics

    try:
        latest, best = eval_scores(read_metrics(run.metrics))
    except OSError:
        latest, best = None, None
    if latest is None:
        return "## Metrics\n\nNo evaluation was recorded (`train.eval_every` was 0)."
    rows = []
    for label, rec in (("latest", latest), ("best FID", best)):
        if rec is not None:
            scores = ", ".join(f"{k} {_fmt(v)}" for k, v in rec.items() if k not in SKIPPED)
            rows.append((label, str(rec.get("epoch", "?")), str(rec.get("step", "?")), scores))
    return "## Metrics\n\n" + _table(["", "epoch", "step", "scores"], rows)


def _config(pipe: Pipeline) -> str:
    assert pipe.config is not None
    text = json.dumps(pipe.config.model_dump(mode="json"), indent=2)
    return ("## Config\n\n<details><summary>the run's config.json</summary>\n\n```json\n"
            f"{text}\n```\n\n</details>")  # fmt: skip


def _table(header: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
