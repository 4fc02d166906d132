"""Few-step students of a trained DDPM or rectified flow (``diffkit distill``).

A student is a run of its teacher's method and network (pixel or latent, unconditional or
class-conditional), started from the teacher's EMA weights and trained with a consistency
loss (:mod:`diffkit.objectives.consistency`); its config's ``distill`` section names the
method and the teacher (with the sha256 of the weights distilled). Sampled like any run,
it takes its family's measured-best sampler (:data:`~diffkit.methods.registry.
STUDENT_SAMPLER`: DDIM for DDPMs, the consistency sampler for flows) at its own steps
unless told otherwise, and resumes, previews, evaluates and exports as any run does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffkit.config.run import DDPMRunConfig, DistillConfig, GenerativeRunConfig, InitConfig
from diffkit.errors import CheckpointError, UsageError
from diffkit.eval.features import tensor_digest
from diffkit.methods.registry import STUDENT_SAMPLER, method_of, schedule_of
from diffkit.objectives.consistency import (
    ConsistencyDistillation,
    ConsistencyTuning,
    DDPMLevels,
    FlowLevels,
    Levels,
)
from diffkit.runs.checkpoint import load_checkpoint, read_checkpoint_header, resolve_checkpoint

STUDENT_TRAIN = {
    "cd": {"lr": 2e-4, "warmup_steps": 50, "max_steps": 1500},
    "ect": {"lr": 1e-4, "warmup_steps": 50, "max_steps": 2000},
}
"""A student's training defaults over its teacher's recipe (its batch, EMA and schedule
stay the teacher's): a short warm-up, a learning rate well below the small presets' 1.5e-3
and a length that keeps the student's training under its teacher's on the small presets.
Chosen by measurement on the small DDPM (docs/benchmarks.md section 20)."""


def teacher_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The EMA weights of a teacher run or checkpoint and their sha256."""
    weights = load_checkpoint(resolve_checkpoint(path), prefixes=("ema",)).section("ema")
    return weights, tensor_digest(weights)


def teacher_config(path: Path) -> dict[str, Any]:
    """The stored config of a teacher run or checkpoint, from its header alone."""
    return read_checkpoint_header(resolve_checkpoint(path)).config


def student_config(
    teacher: GenerativeRunConfig,
    source: Path,
    digest: str,
    *,
    method: str,
    overrides: dict[str, Any] | None = None,
    **settings: Any,
) -> GenerativeRunConfig:
    """The config of a student of ``teacher`` (its run or checkpoint ``source``, EMA weights
    of sha256 ``digest``): the teacher's model, data and latent sections, its recipe under
    :data:`STUDENT_TRAIN` and then ``overrides`` (dotted keys, None = keep), a
    ``distill`` section of ``method`` and ``settings`` (:class:`DistillConfig` fields; the
    others keep its defaults), and ``init_from`` the teacher's EMA weights. A reflowed
    teacher's lineage stays in its own config: the student's names only the teacher."""
    from diffkit.config.resolve import deep_merge, nest, validate

    if teacher.distill is not None:
        raise UsageError(f"{source} is a distilled student itself; distil its teacher, "
                         f"{teacher.distill.teacher}")  # fmt: skip
    where = str(Path(source).resolve())
    d = DistillConfig(method=method, teacher=where, teacher_sha256=digest, **settings)  # type: ignore[arg-type]
    if d.guidance != 1.0 and teacher.num_classes is None:
        raise UsageError("--guidance bakes classifier-free guidance into a student of a "
                         "class-conditional model; this teacher is unconditional")  # fmt: skip
    own = STUDENT_SAMPLER[method_of(teacher.method).family]  # type: ignore[index]
    src = teacher.model_dump(mode="json")
    src.pop("reflow", None)
    train = {"preview_steps": d.steps, "eval_steps": d.steps, "epochs": 1,
             "preview_sampler": own, "eval_sampler": own}  # fmt: skip
    layer: dict[str, Any] = {
        "name": f"{method}{d.steps}",
        "train": STUDENT_TRAIN[method] | train,
        "init_from": InitConfig(source=where, weights="ema", sha256=digest).model_dump(),
        "distill": d.model_dump(),
    }
    merged = deep_merge(deep_merge(src, layer), nest(overrides or {}))
    return validate(type(teacher), merged)


def levels_of(cfg: GenerativeRunConfig) -> Levels:
    """The noise levels of a run's family."""
    if isinstance(cfg, DDPMRunConfig):
        return DDPMLevels(schedule_of(cfg), cfg.diffusion.prediction)
    return FlowLevels()


def student_objective(cfg: GenerativeRunConfig, teacher: nn.Module | None):
    """The training loss of a student config; ``teacher`` (the teacher's network with its
    EMA weights, on the training device) for consistency distillation."""
    d = cfg.distill
    assert d is not None, "not a student config"
    common = {"levels": levels_of(cfg), "num_classes": cfg.num_classes,
              "cond_drop": cfg.train.cond_drop, "huber_c": d.huber_c}  # fmt: skip
    if d.method == "cd":
        if teacher is None:
            raise ValueError("consistency distillation needs the teacher's network")
        return ConsistencyDistillation(**common, teacher=teacher, teacher_steps=d.teacher_steps,
                                       guidance=d.guidance, target=d.target)  # fmt: skip
    return ConsistencyTuning(**common, q=d.ect_q, stage_steps=d.ect_stage_steps,
                             log_sigma_mean=d.ect_log_sigma_mean,
                             log_sigma_std=d.ect_log_sigma_std)  # fmt: skip


def teacher_network(cfg: GenerativeRunConfig, device: torch.device) -> nn.Module:
    """The frozen teacher of a student config, its EMA weights checked against the sha256
    the student recorded (a teacher that changed since is refused)."""
    from diffkit.methods.pipeline import check_weights, load_weights
    from diffkit.nn.build import build_model, meta_model

    d = cfg.distill
    assert d is not None, "not a student config"
    file = resolve_checkpoint(Path(d.teacher))
    check_weights(meta_model(cfg.model), read_checkpoint_header(file).section("ema"), d.teacher,
                  "ema.")  # fmt: skip
    weights, digest = teacher_weights(file)
    if digest != d.teacher_sha256:
        raise CheckpointError(f"the teacher {d.teacher} changed since this student started "
                         f"(sha256 {digest[:16]}, recorded {d.teacher_sha256[:16]})")  # fmt: skip
    net = build_model(cfg.model)
    load_weights(net, weights, Path(d.teacher))
    return net.to(device).eval().requires_grad_(False)
