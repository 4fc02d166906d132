"""``diffkit distill``: a few-step student of a trained DDPM or flow, resolved into a run.

:func:`plan_distill` checks the request and the teacher (a diffkit DDPM or flow run, pixel
or latent, not a student itself) and returns a :class:`~diffkit.app.train.Planned` run
that :func:`diffkit.app.train.run` trains: a consistency student (``cd``, ``ect``;
:mod:`diffkit.methods.distill`) or, for ``reflow``, the k-step distillation of a flow on
a pair set that ``reflow train --distill K`` also trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from diffkit.app.report import QUIET, Reporter
from diffkit.app.train import Planned, ReflowRequest, latent_codec, reflow, resume_config
from diffkit.errors import UsageError

Method = Literal["cd", "ect", "reflow"]
METHODS: tuple[str, ...] = ("cd", "ect", "reflow")


@dataclass(frozen=True)
class DistillRequest:
    """What ``distill`` was given: the teacher run (``source``; not with ``resume``), the
    ``method``, the student's ``steps``, CD's ``teacher_steps`` and baked-in ``guidance``,
    a reflow's ``pairs``, ``overrides`` of the training recipe by dotted key, or a student
    run to ``resume``."""

    source: Path | None = None
    method: Method | None = None
    steps: int | None = None
    teacher_steps: int | None = None
    guidance: float | None = None
    pairs: Path | None = None
    overrides: dict[str, Any] | None = None
    resume: Path | None = None

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)}, not {self.method}")
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise UsageError("--steps must be between 1 and 1000")
        if self.teacher_steps is not None and not 2 <= self.teacher_steps <= 1000:
            raise UsageError("--teacher-steps must be between 2 and 1000")
        if self.guidance is not None and not 0 <= self.guidance <= 20:
            raise UsageError("--guidance must be between 0 and 20")


def plan_distill(req: DistillRequest, device: str, report: Reporter = QUIET) -> Planned:
    """The student run of ``req``; every bad combination is a UsageError before anything
    is read beyond the teacher's header."""
    if req.resume is not None:
        return _resumed(req, device)
    if req.source is None:
        raise UsageError("give the teacher run (RUN) or --resume STUDENT")
    method = req.method or "cd"
    if method == "reflow":
        return _reflow(req, device, report)
    if req.pairs is not None:
        raise UsageError("--pairs is for --method reflow")
    if req.teacher_steps is not None and method != "cd":
        raise UsageError("--teacher-steps is for --method cd (consistency tuning takes no "
                         "teacher steps)")  # fmt: skip
    if req.guidance is not None and method != "cd":
        raise UsageError("--guidance is baked in by --method cd only")
    from diffkit.methods.distill import student_config, teacher_weights

    teacher = _teacher_config(req.source)
    _, digest = teacher_weights(req.source)
    given = {"steps": req.steps, "teacher_steps": req.teacher_steps, "guidance": req.guidance}
    cfg = student_config(teacher, req.source, digest, method=method, overrides=req.overrides,
                         **{k: v for k, v in given.items() if v is not None})  # fmt: skip
    report.info(f"{method} student of the {teacher.method} {req.source}: "
                f"{cfg.train.max_steps} training steps, samples in "
                f"{cfg.distill.steps}")  # fmt: skip
    return Planned(cfg, codec=latent_codec(req.source, cfg, device), init_from=req.source)


def _teacher_config(source: Path):
    """A teacher run's validated config: a DDPM or flow diffkit trained."""
    from diffkit.config.resolve import validate
    from diffkit.methods.distill import teacher_config
    from diffkit.methods.registry import METHODS as RUN_METHODS

    stored = teacher_config(source)
    method = RUN_METHODS.get(stored.get("method")) if isinstance(stored, dict) else None
    if method is None or not method.generative:
        name = stored.get("method") if isinstance(stored, dict) else None
        raise UsageError(f"{source} is a {name} run; distil a DDPM, latent DDPM or flow run")
    return validate(method.config, stored)


def _reflow(req: DistillRequest, device: str, report: Reporter) -> Planned:
    """``--method reflow``: the k-step distillation of the flow ``source`` on ``pairs``."""
    if req.pairs is None:
        raise UsageError("--method reflow trains on a pair set: give --pairs PAIRS "
                         "(from `diffkit reflow make-pairs`)")  # fmt: skip
    if req.teacher_steps is not None or req.guidance is not None:
        raise UsageError("--teacher-steps and --guidance are for --method cd")
    steps = req.steps or 1
    return reflow(ReflowRequest(req.pairs, init_from=req.source, distill=steps,
                                overrides=req.overrides), device, report)  # fmt: skip


def _resumed(req: DistillRequest, device: str) -> Planned:
    """A student (or reflow-distilled flow) run continued where it stopped."""
    given = [n for n, v in (("RUN", req.source), ("--method", req.method), ("--steps", req.steps),
                            ("--teacher-steps", req.teacher_steps), ("--guidance", req.guidance),
                            ("--pairs", req.pairs)) if v is not None]  # fmt: skip
    if given:
        raise UsageError(f"--resume continues a student as configured; drop {', '.join(given)}")
    import json

    from diffkit.methods.registry import method_of
    from diffkit.runs.layout import RunDir

    assert req.resume is not None
    try:
        stored = json.loads(RunDir(req.resume).config.read_text())
        kind = method_of(stored.get("method")).config
    except (OSError, ValueError, AttributeError):
        raise UsageError(f"cannot resume {req.resume}: not a run folder") from None
    if isinstance(stored, dict) and stored.get("reflow") and not stored.get("distill"):
        return reflow(ReflowRequest(resume=req.resume, overrides=req.overrides), device)
    run, cfg = resume_config(req.resume, req.overrides or {}, kind)
    if getattr(cfg, "distill", None) is None:
        raise UsageError(f"{req.resume} is not a student; resume it with its own command")
    # the teacher is checked against its recorded sha256 where training loads it, before
    # the run folder is touched (diffkit.methods.distill.teacher_network)
    return Planned(cfg, run, latent_codec(run.last_checkpoint, cfg, device))
