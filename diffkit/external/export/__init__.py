"""``diffkit export RUN --format diffusers OUT``: a diffkit run as a diffusers pipeline folder.

The folder loads with ``DiffusionPipeline.from_pretrained(OUT, trust_remote_code=True)``:

* ``unet/``: a :class:`~diffkit.external.export.modeling.DiffkitUNet` (config.json holds
  the diffkit network config, diffusion_pytorch_model.safetensors the EMA or raw weights,
  modeling_diffkit.py the code, see :mod:`~diffkit.external.export.bundle`);
* ``scheduler/``: a ``DDPMScheduler`` with the run's betas, prediction type, clipping and
  trailing spacing, or a ``FlowMatchEulerDiscreteScheduler`` for a rectified flow;
* ``vae/`` (latent models): a ``DiffkitVAE`` holding the autoencoder and its latent scale;
* ``model_index.json`` and ``pipeline_diffkit.py``: the ``DiffkitPipeline`` (class labels
  and guidance, latents decoded, flows on diffkit's grid); the unet of an unconditional
  pixel DDPM also runs in diffusers' own ``DDPMPipeline`` and ``DDIMPipeline``;
* ``README.md`` (a model card: config, metrics, how to load) and ``samples.png``.

The folder is built under a hidden sibling name and renamed into place when whole, so an
interrupted export leaves no partial folder (and an older one, with ``overwrite``, intact).
Torch and diffusers are imported inside the functions: importing this package is cheap.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffkit.errors import CheckpointError, DependencyError

if TYPE_CHECKING:
    import torch

    from diffkit.methods.pipeline import Pipeline

INSTALL = "pip install 'diffkit[diffusers]'"
FORMATS = ("diffusers",)
SUPPORTED = ("ddpm", "ldm", "rf")
WEIGHTS = "diffusion_pytorch_model.safetensors"
GRID = "samples.png"
PIPELINE_CLASS = "DiffkitPipeline"


class ExportError(CheckpointError):
    """A run that cannot be exported, or an output that may not be written (exit 2)."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote: the folder, the weights it took (``ema`` or
    ``model``) and where the sample grid came from (a preview's path, or ``generated``)."""

    out: Path
    weights: str
    grid: str


def export_run(
    source: Path,
    out: Path,
    *,
    fmt: str = "diffusers",
    use_ema: bool = True,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
) -> ExportResult:
    """Export the run (folder or checkpoint) ``source`` to the folder ``out``; ``device``
    samples the grid when the run has no preview to copy."""
    import torch

    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not supported; diffkit exports {', '.join(FORMATS)}")
    out = Path(out)
    check_out(out, overwrite)
    diffusers = _import_diffusers()
    pipe, file = _load(Path(source), use_ema, torch.device(device))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the export is not
        meta = _provenance(pipe, file, use_ema)
        _write_components(tmp, pipe, meta, diffusers)
        grid = _write_grid(tmp / GRID, pipe, file)
        from diffkit.external.export.card import write_card

        write_card(tmp / "README.md", pipe, file, meta)
        _publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(out, meta["weights"], grid)


def check_out(out: Path, overwrite: bool) -> None:
    """``out`` must not exist, or (with ``overwrite``) be an earlier export or empty: never
    a run folder or anything else."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    if not overwrite:
        raise ExportError(f"{out} already exists; pass overwrite to replace it")
    if any(out.iterdir()) and not (out / "model_index.json").is_file():
        raise ExportError(f"{out} is not a diffusers folder (no model_index.json); only an "
                          "earlier export is replaced")  # fmt: skip


def _import_diffusers() -> Any:
    try:
        import diffusers
    except ImportError:
        raise DependencyError(f"exporting to diffusers needs the diffusers package: "
                              f"{INSTALL}") from None  # fmt: skip
    return diffusers


def _load(source: Path, use_ema: bool, device: torch.device) -> tuple[Pipeline, Path]:
    """The run's pipeline (its checks made before a tensor is read) and checkpoint file."""
    from diffkit.external import is_foreign
    from diffkit.methods.restore import load_run_pipeline
    from diffkit.runs.checkpoint import read_checkpoint_header, resolve_checkpoint

    if is_foreign(source):
        raise ExportError(f"{source} is a diffusers folder already; export takes diffkit runs")
    file = resolve_checkpoint(source)
    header = read_checkpoint_header(file)
    method = header.config.get("method")
    if method not in SUPPORTED:
        raise ExportError(f"{source}: exporting {method} runs is not supported; diffkit "
                          f"exports {', '.join(SUPPORTED)} runs")  # fmt: skip
    if (header.config.get("latent") or {}).get("pretrained") is not None:
        raise ExportError(f"{source} runs on a pretrained autoencoder; exporting such runs "
                          "is not supported yet")  # fmt: skip
    if (header.config.get("diffusion") or {}).get("prediction") == "edm":
        raise ExportError(f"{source} predicts with EDM preconditioning, which diffusers' "
                          "DDPMScheduler has no prediction type for")  # fmt: skip
    return load_run_pipeline(source, file, header, device, use_ema), file


def _provenance(pipe: Pipeline, file: Path, use_ema: bool) -> dict[str, Any]:
    """The ``diffkit`` entry of each component's config.json."""
    from diffkit import __version__

    cfg = pipe.config
    assert cfg is not None  # a diffkit run's pipeline carries its config
    return {
        "version": __version__,
        "method": cfg.method,
        "checkpoint": str(file),
        "weights": "ema" if use_ema else "model",
        "default_steps": pipe.model.default_steps("ddpm"),
        "prediction": getattr(pipe.model, "prediction", "velocity"),
        "dataset": cfg.data.dataset,
    }


def _write_components(tmp: Path, pipe: Pipeline, meta: dict[str, Any], diffusers: Any) -> None:
    """unet/, scheduler/, vae/ (latent models), model_index.json and the code files."""
    from diffkit.external.export.bundle import (
        MODELING_FILE,
        PIPELINE_FILE,
        modeling_source,
        pipeline_source,
    )
    from diffkit.runs.layout import atomic_write_bytes

    model, code = pipe.model, modeling_source(meta["version"]).encode()
    _write_model(tmp / "unet", "DiffkitUNet", _unet_config(pipe, meta), model.net, code)
    scheduler = pipe.diffusers_scheduler(diffusers)
    (tmp / "scheduler").mkdir()
    scheduler.save_config(tmp / "scheduler")
    module = MODELING_FILE.removesuffix(".py")
    index: dict[str, Any] = {
        "_class_name": [PIPELINE_FILE.removesuffix(".py"), PIPELINE_CLASS],
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", type(scheduler).__name__],
        "unet": [module, "DiffkitUNet"],
        "vae": [None, None],
    }
    atomic_write_bytes(tmp / PIPELINE_FILE, pipeline_source(meta["version"]).encode())
    if model.codec is not None:
        codec = model.codec
        vae_cfg = {"network": codec.config.model.model_dump(mode="json"),
                   "scaling_factor": codec.scale, "shift_factor": codec.shift,
                   "diffkit": meta | {"vae_source": codec.source}}  # fmt: skip
        _write_model(tmp / "vae", "DiffkitVAE", vae_cfg, codec.net, code)
        index["vae"] = [module, "DiffkitVAE"]
    atomic_write_bytes(tmp / "model_index.json", _json(index))


def _unet_config(pipe: Pipeline, meta: dict[str, Any]) -> dict[str, Any]:
    cfg, shape = pipe.config, tuple(pipe.model.sample_shape)
    assert cfg is not None
    return {
        "network": cfg.model.model_dump(mode="json"),
        "family": pipe.model.family,
        "sample_shape": list(shape),
        "num_classes": pipe.model.num_classes,
        "in_channels": shape[0],
        "sample_size": shape[1] if len(shape) == 3 else None,  # what DDPMPipeline reads
        "time_scale": float(getattr(pipe.model, "time_scale", 1000.0)),
        "diffkit": meta,
    }


def _write_model(folder: Path, cls: str, config: dict[str, Any], net: Any, code: bytes) -> None:
    """A custom diffusers component: config.json, the weights (under ``net.``, as the
    wrapper holds the network) and its code file."""
    from safetensors.torch import save

    from diffkit.external.export.bundle import MODELING_FILE
    from diffkit.runs.layout import atomic_write_bytes

    folder.mkdir()
    header = {"_class_name": cls, "_diffusers_version": _import_diffusers().__version__}
    atomic_write_bytes(folder / "config.json", _json(header | config))
    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS, save(tensors, metadata={"format": "pt"}))
    atomic_write_bytes(folder / MODELING_FILE, code)


def _write_grid(path: Path, pipe: Pipeline, file: Path) -> str:
    """``samples.png``: the run's newest preview grid, else a small one sampled now as
    previews are (the run's preview sampler, steps and seed; a column per class)."""
    from diffkit.runs.layout import RunDir, run_folder_of

    found = RunDir(run_folder_of(file)).samples.glob("epoch-*.png")
    numbered = [p for p in found if p.stem[6:].isdigit()]
    previews = sorted(numbered, key=lambda p: int(p.stem[6:]))  # epoch 10000 after 9999
    if previews:
        shutil.copyfile(previews[-1], path)
        return str(previews[-1])
    from diffkit.methods.pipeline import cycle_labels
    from diffkit.runs.plots import save_grid

    cfg, k = pipe.config, pipe.num_classes
    assert cfg is not None
    n = 2 * k if k else 16
    images = pipe.sample(n, sampler=cfg.train.preview_sampler, steps=cfg.train.preview_steps,
                         seed=cfg.train.seed, labels=cycle_labels(k, n)).images  # fmt: skip
    save_grid(images, path, nrow=k)
    return "generated"


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished folder into place; an older export goes only after that."""
    old = None
    if out.exists():
        if not overwrite:
            raise ExportError(f"{out} appeared while exporting; kept it")
        old = out.with_name(f".{out.name}.old-{tmp.name}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()
