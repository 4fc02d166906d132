"""Reflow (Liu, Gong and Liu 2022, Sec. 2.3): straighten a rectified flow by retraining it
on the (noise, sample) couplings its own ODE produces.

:func:`make_pairs` integrates a trained flow from fixed noise and writes the pairs as
safetensors shards into a pair-set folder, shard by shard: ``pairs.json`` lists the finished
shards with their sha256, so an interrupted job keeps them and ``resume`` regenerates only
the missing ones (shard k's noise depends on (seed, k) alone). :func:`load_pairs` checks every
shard against that list before a reflow trains on it (``train_generative(pairs=...)``).
:func:`straightness` measures S, which reflow should drive towards 0.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import Tensor

from diffkit.config.run import FlowRunConfig, PairsConfig
from diffkit.data.registry import DataError, ImageData
from diffkit.methods.flow import FlowPipeline
from diffkit.methods.pipeline import SampleOptions, cycle_labels
from diffkit.resources import check_memory
from diffkit.runs.layout import RunLock, atomic_write_bytes, clean_temporaries, write_json
from diffkit.samplers import registry
from diffkit.samplers.ode import euler_step

MANIFEST = "pairs.json"
SHARD_SEED_STRIDE = 1_000_003


class PairsError(DataError):
    """A pair set that is missing, incomplete, tampered with, or made differently."""


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def shard_noise(cfg: PairsConfig, shard: int, shape: tuple[int, ...]) -> Tensor:
    """The fixed noise ``(count, *shape)`` of shard ``shard``: a CPU generator seeded by
    (seed, shard), so a shard comes out the same whenever (and wherever) it is made."""
    start = shard * cfg.shard_size
    count = min(cfg.shard_size, cfg.n - start)
    g = torch.Generator().manual_seed(cfg.seed * SHARD_SEED_STRIDE + shard)
    return torch.randn(count, *shape, generator=g)


def straightness(
    pipe: FlowPipeline, n: int = 500, steps: int = 100, *, seed: int = 0,
    batch_size: int = 500, guidance: float = 1.0,
) -> dict[str, float]:  # fmt: skip
    """S of a flow (mean and std over ``n`` paths, ``steps`` Euler steps from seeded noise;
    class-conditional flows cycle through the classes)."""
    noise = torch.randn(n, *pipe.model.sample_shape, generator=torch.Generator().manual_seed(seed))
    labels = cycle_labels(pipe.num_classes, n)
    values = []
    for start in range(0, n, batch_size):
        y = labels[start : start + batch_size] if labels is not None else None
        _, s = pipe.euler_measured(noise[start : start + batch_size], steps, labels=y,
                                   guidance=guidance)  # fmt: skip
        values.append(s.cpu())
    s = torch.cat(values)
    return {"straightness": float(s.mean()), "straightness_std": float(s.std()) if n > 1 else 0.0,
            "n": n, "steps": steps}  # fmt: skip


@dataclass
class PairsProgress:
    shard: int
    shards: int
    pairs_done: int
    seconds: float
    skipped: bool  # already on disk (resume)


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise PairsError(f"{folder} is not a pair set (cannot read {MANIFEST}: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("shards"), dict):
        raise PairsError(f"{folder / MANIFEST} is malformed")
    return data


def make_pairs(
    cfg: PairsConfig,
    pipe: FlowPipeline,
    folder: Path,
    *,
    resume: bool = False,
    on_shard: Callable[[PairsProgress], None] = lambda p: None,
    on_batch: Callable[[int], None] | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write ``cfg.n`` pairs into ``folder`` (config.json, pairs.json, ``shard-*.safetensors``)
    and return the manifest. With ``resume`` the folder's config must equal ``cfg``; shards
    listed in its manifest whose sha256 still matches are kept, the rest are made.
    ``on_batch(count)`` follows each solved batch, ``on_shard`` each shard written or kept;
    without ``on_batch`` a bar counts the pairs (``progress``: default, in a terminal).

    A shard holds ``noise`` ``(count, *shape)``, ``sample`` ``(count, *shape)`` (float32, in the
    flow's space: latents stay latents) and, for a class-conditional flow, ``labels``.
    The folder is locked (:class:`RunLock`) throughout: a second job on it fails at once,
    and a resume first deletes the temp files a killed job left.
    """
    if resume and not folder.is_dir():
        raise PairsError(f"{folder} is not a pair set (no such folder)")
    folder.mkdir(parents=True, exist_ok=True)
    with RunLock(folder):
        if resume:
            clean_temporaries(folder)
            manifest = _resumed_manifest(cfg, folder)
        elif (folder / MANIFEST).exists():  # starting over would overwrite its shards
            raise PairsError(f"{folder} already holds a pair set; resume it or pick a new folder")
        else:
            manifest = _new_manifest(cfg, pipe, folder)
        if on_batch is not None:
            return _fill(cfg, pipe, folder, manifest, on_shard, on_batch)
        from diffkit.progress import step_bar, wanted

        with step_bar("pairs", cfg.n, wanted(progress), unit="pair") as tick:
            if tick is None:
                return _fill(cfg, pipe, folder, manifest, on_shard, lambda n: None)

            def shard_done(p: PairsProgress) -> None:
                if p.skipped:  # kept from an earlier run: its pairs count as done
                    tick(min(cfg.shard_size, cfg.n - p.shard * cfg.shard_size))
                on_shard(p)

            return _fill(cfg, pipe, folder, manifest, shard_done, tick)


def _new_manifest(cfg: PairsConfig, pipe: FlowPipeline, folder: Path) -> dict[str, Any]:
    write_json(folder / "config.json", cfg.model_dump(mode="json"))
    manifest = {
        "complete": False, "shards": {}, "sample_shape": list(pipe.model.sample_shape),
        "num_classes": pipe.num_classes, "source_config": pipe.config.model_dump(mode="json"),
    }  # fmt: skip
    write_json(folder / MANIFEST, manifest)
    return manifest


def _resumed_manifest(cfg: PairsConfig, folder: Path) -> dict[str, Any]:
    """The manifest of a pair set made with ``cfg``, keeping only the entries of shards
    this config makes (a stray or malformed entry is dropped, its shard made again)."""
    manifest = _manifest(folder)
    try:
        stored = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise PairsError(f"{folder} is not a pair set (cannot read config.json: {exc})") from None
    if stored != cfg.model_dump(mode="json"):
        raise PairsError(f"{folder} was made with different settings; resume it as made")
    names = {_shard_name(k) for k in range(-(-cfg.n // cfg.shard_size))}
    shards = manifest["shards"]
    manifest["shards"] = {k: e for k, e in shards.items() if k in names and _well_formed(e)}
    return manifest


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.safetensors"


def _well_formed(entry: Any) -> bool:
    """Whether a manifest entry has the fields (and types) that :func:`_make_shard` writes."""
    if not isinstance(entry, dict):
        return False
    s = entry.get("straightness")
    return (isinstance(entry.get("sha256"), str) and type(entry.get("count")) is int
            and (s is None or isinstance(s, int | float)))  # fmt: skip


def _fill(
    cfg: PairsConfig,
    pipe: FlowPipeline,
    folder: Path,
    manifest: dict[str, Any],
    on_shard: Callable[[PairsProgress], None],
    on_batch: Callable[[int], None],
) -> dict[str, Any]:
    """Make every shard the manifest lacks, then mark the set complete."""
    shape = pipe.model.sample_shape
    shards = -(-cfg.n // cfg.shard_size)
    done = 0
    for k in range(shards):
        name = _shard_name(k)
        entry = manifest["shards"].get(name)
        if entry and (folder / name).is_file() and file_sha256(folder / name) == entry["sha256"]:
            done += entry["count"]
            on_shard(PairsProgress(k, shards, done, 0.0, skipped=True))
            continue
        start_time = time.perf_counter()
        entry = _make_shard(cfg, pipe, k, shape, folder / name, on_batch)
        entry["seconds"] = time.perf_counter() - start_time
        manifest["shards"][name] = entry
        write_json(folder / MANIFEST, manifest)  # after the shard: it lists only whole files
        done += entry["count"]
        on_shard(PairsProgress(k, shards, done, entry["seconds"], skipped=False))
    manifest["complete"] = True
    manifest["digest"] = pairs_digest(manifest)
    measured = [(e["straightness"], e["count"]) for e in manifest["shards"].values()
                if e.get("straightness") is not None]  # fmt: skip
    if measured:
        manifest["straightness"] = sum(s * c for s, c in measured) / sum(c for _, c in measured)
    write_json(folder / MANIFEST, manifest)
    return manifest


def _make_shard(
    cfg: PairsConfig,
    pipe: FlowPipeline,
    k: int,
    shape: tuple[int, ...],
    path: Path,
    on_batch: Callable[[int], None],
) -> dict[str, Any]:
    noise = shard_noise(cfg, k, shape)
    start = k * cfg.shard_size
    labels = cycle_labels(pipe.num_classes, start + noise.shape[0])
    labels = labels[start:] if labels is not None else None
    samples, s_values = [], []
    for b in range(0, noise.shape[0], cfg.batch_size):
        y = labels[b : b + cfg.batch_size] if labels is not None else None
        part = noise[b : b + cfg.batch_size]
        if registry.load(cfg.solver).fn is euler_step:  # Euler measures S on the way; no other
            x, s = pipe.euler_measured(part, cfg.steps, labels=y, guidance=cfg.guidance)
            s_values.append(s.cpu())
        else:
            opts = SampleOptions(rtol=cfg.rtol, atol=cfg.atol)
            x, _ = pipe.generate(part, cfg.solver, cfg.steps, labels=y, guidance=cfg.guidance,
                                 opts=opts)  # fmt: skip
        samples.append(x.float().cpu())
        on_batch(part.shape[0])
    tensors = {"noise": noise.contiguous(), "sample": torch.cat(samples).contiguous()}
    if labels is not None:
        tensors["labels"] = labels.contiguous()
    atomic_write_bytes(path, save(tensors))
    return {
        "start": start, "count": noise.shape[0], "sha256": file_sha256(path),
        "straightness": float(torch.cat(s_values).mean()) if s_values else None,
    }  # fmt: skip


def pairs_digest(manifest: dict[str, Any]) -> str:
    """sha256 over the sorted shard digests: names the exact pair set a reflow used."""
    h = hashlib.sha256()
    for name in sorted(manifest["shards"]):
        h.update(f"{name}:{manifest['shards'][name]['sha256']}\n".encode())
    return h.hexdigest()


@dataclass
class PairSet:
    folder: Path
    config: PairsConfig
    source_config: FlowRunConfig
    data: ImageData  # images: (N, 2, *shape) float32 = stack(noise, sample)
    digest: str
    manifest: dict[str, Any]


def load_pairs(folder: Path) -> PairSet:
    """A complete pair set, every shard checked against its sha256 and its shapes; refused
    (ResourceError) before loading if it cannot fit in memory."""
    from diffkit.config.resolve import validate

    manifest = _manifest(folder)
    if not manifest.get("complete"):
        raise PairsError(f"{folder} is incomplete; finish it with "
                         f"`diffkit reflow make-pairs --resume {folder}`")  # fmt: skip
    try:
        cfg = validate(PairsConfig, json.loads((folder / "config.json").read_text()))
        source = validate(FlowRunConfig, manifest["source_config"])
    except (OSError, ValueError, KeyError) as exc:
        raise PairsError(f"{folder}: unreadable pair-set config ({exc})") from None
    paths = _checked_shards(folder, manifest)
    # the shards, then their concatenation: twice their size at the peak
    check_memory(2 * sum(p.stat().st_size for p in paths), f"loading the pair set {folder}")
    pairs, labels = [], []
    for path in paths:
        pair, label = _shard_pairs(load_file(path), path, source.sample_shape)
        pairs.append(pair)
        if label is not None:
            labels.append(label)
    data = torch.cat(pairs)
    if data.shape[0] != cfg.n:
        raise PairsError(f"{folder} holds {data.shape[0]} pairs, its config says {cfg.n}")
    y = torch.cat(labels) if labels else None
    if (y is None) != (source.num_classes is None) or (y is not None and len(y) != len(data)):
        raise DataError(f"{folder}: labels do not match the source model's conditioning")
    return PairSet(folder, cfg, source, ImageData(data, y, ()), pairs_digest(manifest), manifest)


def _checked_shards(folder: Path, manifest: dict[str, Any]) -> list[Path]:
    """The shard files of a manifest in order, each present and matching its sha256."""
    paths = []
    for name in sorted(manifest["shards"]):
        path, entry = folder / name, manifest["shards"][name]
        if not _well_formed(entry) or Path(name).name != name:
            raise PairsError(f"{folder / MANIFEST} is malformed (entry {name!r})")
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            raise PairsError(f"{path} is missing or does not match its sha256 in {MANIFEST}")
        paths.append(path)
    return paths


def _shard_pairs(
    t: dict[str, Tensor], path: Path, shape: tuple[int, ...]
) -> tuple[Tensor, Tensor | None]:
    """(pairs (count, 2, *shape), labels (count,) or None) of one loaded shard."""
    noise, sample, labels = t.get("noise"), t.get("sample"), t.get("labels")
    if noise is None or sample is None or noise.shape != sample.shape or (
            tuple(noise.shape[1:]) != tuple(shape)):  # fmt: skip
        raise PairsError(f"{path} does not hold (noise, sample) pairs of shape {tuple(shape)}")
    if labels is not None and tuple(labels.shape) != (noise.shape[0],):
        raise PairsError(f"{path}: labels do not match its {noise.shape[0]} pairs")
    return torch.stack([noise, sample], dim=1), labels


def reflow_config(
    pairs: PairSet,
    *,
    distill_steps: int | None = None,
    init_from: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> FlowRunConfig:
    """The config of a flow trained on ``pairs``: the source flow's model, data and latent
    sections, its training recipe under ``overrides`` (dotted keys, None = keep), and a
    ``reflow`` section naming the pairs. A reflow of a k-RF's pairs is the (k+1)-RF; a
    distilled model keeps its source's k and previews/evaluates at its own step count."""
    from diffkit.config.resolve import deep_merge, nest, validate

    src = pairs.source_config.model_dump(mode="json")
    k = pairs.source_config.reflow.generation if pairs.source_config.reflow else 1
    generation = k if distill_steps else k + 1
    layer: dict[str, Any] = {
        "name": f"distill{distill_steps}-{k}rf" if distill_steps else f"{generation}rf",
        "reflow": {
            "pairs": str(pairs.folder), "pairs_digest": pairs.digest,
            "source": pairs.config.source, "generation": generation,
            "distill_steps": distill_steps, "init_from": init_from,
        },
    }  # fmt: skip
    if distill_steps:
        layer["train"] = {"preview_steps": distill_steps, "eval_steps": distill_steps}
    return validate(FlowRunConfig, deep_merge(deep_merge(src, layer), nest(overrides or {})))
