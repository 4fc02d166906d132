"""Helpers that several application functions share: classes and hints of a request,
sampler checks, progress lengths, free output names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffkit.errors import UsageError
from diffkit.runs.layout import run_folder_of


def progress_total(sampler: str, steps: int, n: int, batch_size: int) -> int | None:
    """Progress-bar length of sampling ``n`` images: one tick per step of every batch
    (None for an adaptive solver, whose number of steps is known only afterwards)."""
    from diffkit.samplers.registry import sampler_spec

    return None if sampler_spec(sampler).adaptive else steps * -(-n // batch_size)


def free_path(path: Path) -> Path:
    """``path`` or ``path`` with a numeric suffix, whichever does not exist yet."""
    candidate, i = path, 1
    while candidate.exists():
        candidate, i = path.with_name(f"{path.stem}-{i}{path.suffix}"), i + 1
    return candidate


def check_source(source: Path, what: str) -> None:
    """Refuse a ``source`` that is neither a path here nor a hub model (hf:ORG/NAME)."""
    from diffkit.external import is_foreign

    if not source.exists() and not is_foreign(source):
        raise UsageError(f"no {what} at {source}")


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


@dataclass(frozen=True)
class ControlRequest:
    """A ControlNet's hint and control options as a request gives them (the defaults: no
    hint, the control as trained). Any other model refuses all but the defaults."""

    hint: str | None = None  # an image, a folder or dataset items (mnist:test:0..63)
    hint_is_edges: bool = False
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0
    guess: bool = False

    @property
    def control(self) -> dict[str, Any]:
        """The fields of :class:`~diffkit.methods.controlnet.Control`, as :func:`hinted`
        reads them."""
        return {"scale": self.scale, "start": self.start, "end": self.end, "guess": self.guess}

    def recorded(self) -> dict[str, Any]:
        """The control as a report records it: its fields, then ``hint_is_edges``."""
        return self.control | {"hint_is_edges": self.hint_is_edges}

    def steer(self, pipe, data_dir: Path):
        """:func:`hinted` with these options: (the pipeline, the hints or None)."""
        return hinted(pipe, self.hint, self.hint_is_edges, self.control, data_dir)


@dataclass(frozen=True)
class CacheRequest:
    """DeepCache (:class:`~diffkit.accel.CacheConfig`); ``interval`` 1 is off."""

    interval: int = 1
    branch: int = 1
    schedule: str = "uniform"
    center: float = 0.0
    mode: str = "linear"

    def config(self):
        from diffkit.accel import CacheConfig

        try:
            return CacheConfig(self.interval, self.branch, self.schedule, self.center,
                               self.mode)  # type: ignore[arg-type]  # fmt: skip
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def guidance_interval(spec: str | None) -> tuple[float, float] | None:
    """``--guidance-interval LO:HI`` as ``(lo, hi)``; UsageError naming a malformed one."""
    if spec is None:
        return None
    try:
        lo, hi = (float(v) for v in spec.split(":"))
    except ValueError:
        raise UsageError(f"--guidance-interval takes LO:HI noise levels (sigma), e.g. 0.3:5, "
                         f"not {spec!r}") from None  # fmt: skip
    if not 0 <= lo < hi:  # NaN fails it too
        raise UsageError(f"--guidance-interval needs 0 <= LO < HI, not {spec}")
    return lo, hi


def banded_by(pipe, interval: tuple[float, float] | None, guided: bool):
    """``pipe`` guiding only on the noise levels of ``interval`` (None: everywhere); a
    UsageError when nothing guides (``guided``: a guidance scale other than 1, or a sweep
    of it)."""
    if interval is None:
        return pipe
    if not guided:
        raise UsageError("--guidance-interval limits guidance: give --guidance W (W != 1), "
                         "with classes or --guide-model")  # fmt: skip
    return pipe.banded(*interval)


def autoguided_by(pipe, guide: Path | None, device, use_ema: bool = True):
    """``pipe`` autoguided by the model at ``guide`` (a run folder or any checkpoint of a
    weaker version of it: an earlier epoch, a smaller or shorter run), or ``pipe`` itself
    for None. UsageError for a guide that is not a compatible model."""
    if guide is None:
        return pipe
    from diffkit.methods.load import load_pipeline

    check_source(guide, "guide model")
    try:
        return pipe.guided_by(load_pipeline(guide, device, use_ema=use_ema))
    except ValueError as exc:
        raise UsageError(f"--guide-model {guide}: {exc}") from None
