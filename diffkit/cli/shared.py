"""Helpers shared by several commands (train and reflow; eval and cache-bench), so that
no command module imports another's private functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from diffkit.cli import console
from diffkit.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, UsageError
from diffkit.cli.signals import EXIT_TERMINATED
from diffkit.runs.layout import RunDir, run_folder_of

if TYPE_CHECKING:
    from diffkit.config.run import GenerativeRunConfig

# Flags that may accompany --resume: they extend or relocate a run without changing it.
RESUMABLE = {"train.epochs", "train.max_steps"}


def resume_config(run_path: Path, flags: dict, kind: type[GenerativeRunConfig]):
    """The run folder and stored config of ``--resume RUN``, with only the RESUMABLE
    ``flags`` applied; any other flag, or a run of another method, is a UsageError."""
    import json

    from diffkit.config.resolve import validate
    from diffkit.methods.registry import METHODS

    run = RunDir(run_path)
    if not run.config.is_file() or not run.last_checkpoint.is_file():
        raise UsageError(
            f"cannot resume {run_path}: not a run folder with checkpoints/last.safetensors"
        )
    changed = sorted(k for k, v in flags.items() if v is not None and k not in RESUMABLE)
    if changed:
        raise UsageError(
            f"--resume continues a run as configured; cannot change {', '.join(changed)}"
        )
    try:
        stored = json.loads(run.config.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot resume {run_path}: unreadable config.json ({exc})") from None
    method = METHODS.get(stored.get("method")) if isinstance(stored, dict) else None
    if method is None or method.config is not kind:
        name = stored.get("method") if isinstance(stored, dict) else None
        how = f"resume it with `diffkit {method.command} --resume`" if method else "not a run"
        raise UsageError(f"{run_path} is a {name} run; {how}")
    stored.setdefault("train", {}).update(
        {k.split(".")[1]: v for k, v in flags.items() if k in RESUMABLE and v is not None}
    )
    return run, validate(kind, stored)


def logger_names(values: list[str] | None) -> tuple[str, ...]:
    """``--logger`` values as logger names, each one's package checked to be installed
    (a missing one: exit 2 naming the pip command, before any run folder exists)."""
    from diffkit.training.loggers import check_installed, parse_loggers

    try:
        names = parse_loggers(values or [])
    except ValueError as exc:
        raise UsageError(f"--logger: {exc}") from None
    check_installed(names)
    return names


@contextmanager
def train_hooks(
    loggers: tuple[str, ...] = (), enabled: bool = True
) -> Iterator[tuple[Callable[[Any], None], Callable[[RunDir], None]]]:
    """``(on_event, on_run_dir)`` for a training method: the progress bar, and the
    ``loggers``, which start in the run folder once the method names it and are closed
    however the block ends. ``enabled`` False (a process other than rank 0): neither."""
    from diffkit.training.loggers import RunLoggers

    progress = console.TrainProgress(enabled=enabled)
    sinks = RunLoggers(loggers if enabled else (), warn=console.warning)

    def on_event(event) -> None:
        progress(event)
        sinks(event)

    def on_run_dir(run: RunDir) -> None:
        console.info(f"run folder: {run.path}")
        sinks.open(run)

    try:
        yield on_event, on_run_dir
    finally:
        sinks.close()


def train_diffusion(
    cfg: GenerativeRunConfig,
    run: RunDir | None,
    settings,
    classifier: Path | None,
    codec,
    loggers: tuple[str, ...] = (),
    **extra,
) -> RunDir | None:
    """Train (or resume) a pixel or latent DDPM or flow and report how it ended; the run
    folder on the main process after a finished run."""
    from diffkit.methods.generative import train_generative
    from diffkit.training.distributed import destroy, dist_from_env, init_process_group
    from diffkit.training.hardware import resolve_device

    dist = dist_from_env()
    init_process_group(dist, resolve_device(settings.device, dist.local_rank))
    try:
        with train_hooks(loggers, enabled=dist.is_main) as (on_event, on_run_dir):
            run, result = train_generative(
                cfg, settings, resume=run, dist=dist, classifier=classifier, codec=codec,
                on_event=on_event, on_run_dir=on_run_dir, **extra,
            )  # fmt: skip
    finally:
        destroy()
    if not dist.is_main:
        return None
    return report_stop(run, result)


def show_config(cfg, requested: bool) -> None:
    """``--print-config``: the resolved config as TOML on stdout, then exit 0 before
    anything is written (``--config`` reads the output back to the same config)."""
    if not requested:
        return
    from diffkit.config.resolve import to_toml

    header = (f"# diffkit {cfg.method} config, resolved from flags > --config > DIFFKIT_* "
              "> preset; use it with --config FILE\n")  # fmt: skip
    console.out.print(header + to_toml(cfg.model_dump(mode="json")), markup=False,
                      highlight=False, end="")  # fmt: skip
    raise typer.Exit(0)


def report_stop(run: RunDir, result) -> RunDir:
    """Print the run folder and how training ended; exit non-zero unless it finished."""
    console.out.print(str(run.path))
    match result.reason:
        case "non_finite":
            kept = (f"the last good checkpoint is kept at {result.checkpoint}"
                    if result.checkpoint is not None else "no checkpoint was written")  # fmt: skip
            console.error(f"loss became NaN/inf at step {result.step}; stopped, {kept}")
            raise typer.Exit(EXIT_FAILED)
        case "interrupted":
            how = "terminated" if result.stop_signal == "SIGTERM" else "interrupted"
            console.info(f"{how} at step {result.step}; resume with --resume {run.path}")
            raise typer.Exit(stop_code(result))
        case _:
            loss = f", loss {result.last_loss:.4f}" if result.last_loss is not None else ""
            epochs = f"{result.epochs_done:.2f}".rstrip("0").rstrip(".")
            console.info(
                f"{result.reason}: {result.step} steps, {epochs} "
                f"epoch{'' if epochs == '1' else 's'}, {result.images_per_sec:.0f} img/s{loss}"
            )
    return run


def stop_code(result) -> int:
    """130 after Ctrl-C, 143 after SIGTERM: what a shell expects of a stopped job."""
    return EXIT_TERMINATED if result.stop_signal == "SIGTERM" else EXIT_INTERRUPTED


def latent_codec(checkpoint: Path, cfg: GenerativeRunConfig, device: str):
    """A latent model's autoencoder, from the ``vae.*`` tensors a checkpoint of it embeds
    (not the VAE folder); None for a pixel model."""
    from diffkit.methods.latent import codec_from_file
    from diffkit.runs.checkpoint import resolve_checkpoint
    from diffkit.training.hardware import resolve_device

    if cfg.latent is None:
        return None
    return codec_from_file(cfg.latent, resolve_checkpoint(checkpoint), resolve_device(device))


def progress_total(sampler: str, steps: int, n: int, batch_size: int) -> int | None:
    """Progress-bar length of sampling ``n`` images: one tick per step of every batch
    (None for an adaptive solver, whose number of steps is known only afterwards)."""
    from diffkit.samplers.table import SAMPLERS

    return None if SAMPLERS[sampler].adaptive else steps * -(-n // batch_size)


def free_path(path: Path) -> Path:
    """``path`` or ``path`` with a numeric suffix, whichever does not exist yet."""
    candidate, i = path, 1
    while candidate.exists():
        candidate, i = path.with_name(f"{path.stem}-{i}{path.suffix}"), i + 1
    return candidate


def source_name(source: Path) -> str:
    """A short name for a plot's title: the run folder's name, ``run/checkpoint`` for a
    checkpoint inside a run, else the file, folder or hub model's own name."""
    run = run_folder_of(source)
    if source.is_file() and (run / "config.json").is_file():
        return f"{run.name}/{source.name}"
    return source.name or str(source)


def check_steps(pipe, sampler: str, steps: int | None) -> int:
    try:
        return pipe.check(sampler, steps)
    except ValueError as exc:
        raise UsageError(f"--sampler/--steps: {exc}") from None


def model_class_names(pipe) -> tuple[str, ...]:
    """The class names of a loaded model: those its run was trained with (recorded in its
    config for a folder, so a moved folder keeps them), none for a foreign model."""
    from diffkit.data.registry import class_names_of

    return class_names_of(pipe.config.data) if pipe.config is not None else ()


def parse_classes(
    specs: list[str], dataset: str, num_classes: int | None, known: tuple[str, ...] = ()
) -> list[int]:
    """``--class`` values -> class indices. Each value is a comma list of class names
    (``known``, any case; a name wins over an index, so a folder's class ``10`` is that
    folder), indices, ranges (``0..9``) or ``all``."""
    if num_classes is None:
        raise UsageError("this model is unconditional; --class, --guidance and "
                         "--grid-per-class need a model trained with --cond class")  # fmt: skip
    names = [n.lower() for n in known]
    out: list[int] = []
    for spec in specs:
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            if part == "all":
                out.extend(range(num_classes))
            elif ".." in part and all(x.strip().isdigit() for x in part.split("..", 1)):
                lo, hi = (int(x) for x in part.split("..", 1))
                if not lo <= hi < num_classes:
                    raise UsageError(f"--class {part}: need 0 <= first <= last < {num_classes}")
                out.extend(range(lo, hi + 1))
            elif part.lower() in names:
                out.append(names.index(part.lower()))
            elif part.isdigit() and int(part) < num_classes:
                out.append(int(part))
            else:
                listed = ", ".join(known) or f"0..{num_classes - 1}"
                raise UsageError(f"--class {part!r} is not a class of {dataset} ({listed})")
    return out


def hinted(pipe, hint: str | None, is_edges: bool, control: dict, data_dir: Path):
    """(the pipeline steered as ``control`` says, the hints of ``--hint`` or None). A
    ControlNet needs a hint; any other model refuses hints and control options."""
    from diffkit.data.hints import load_hints
    from diffkit.data.registry import image_shape
    from diffkit.methods.controlnet import Control, is_controlled, with_control

    changed = [k for k, v in control.items() if v != getattr(Control(), k)]
    if not is_controlled(pipe.model):
        given = (["--hint"] if hint is not None else []) + (["--hint-is-edges"] if is_edges else [])
        given += [f"--control-{k}" if k != "guess" else "--guess-mode" for k in changed]
        if given:
            raise UsageError(f"{', '.join(given)}: this {pipe.model.name} model takes no hint; "
                             "train one with `diffkit train controlnet --base RUN`")  # fmt: skip
        return pipe, None
    if hint is None:
        raise UsageError("a ControlNet samples with --hint SPEC (an image, a folder or "
                         "mnist:test:0..63); sample its base for images without one")  # fmt: skip
    try:
        pipe = with_control(pipe, Control(**control))
    except ValueError as exc:
        raise UsageError(f"--control-*: {exc}") from None
    channels, size = image_shape(pipe.config.data)
    hints = load_hints(hint, (channels, size, size), pipe.model.hint_config, data_dir,
                       is_edges=is_edges)  # fmt: skip
    return pipe, hints
