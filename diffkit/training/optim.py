"""Optimiser and learning-rate schedule (a pure function of the step)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from diffkit.config.run import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices and kernels, not on biases and norms. Fused
    (one kernel for every parameter's update) where :func:`can_fuse` allows, else torch's
    default implementation (foreach on CUDA, a loop over parameters on CPU)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = {"fused": True} if can_fuse(decay + no_decay) else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), **fused)


def can_fuse(params: Sequence[Tensor]) -> bool:
    """Whether AdamW's fused implementation takes ``params``: it needs every one to be a
    floating-point CUDA tensor (torch >= 2.0). The fused kernel saves the per-parameter
    launches of the foreach path, which add up on GPUs with many small tensors; CPU and
    meta parameters (the resume checks build the optimiser on a meta model) keep the
    default, so CPU runs are unchanged."""
    return bool(params) and all(p.is_cuda and p.is_floating_point() for p in params)


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then decay to ``lr * lr_final_factor``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, total_steps - cfg.warmup_steps)
    p = min(1.0, (step - cfg.warmup_steps) / span)
    f = cfg.lr_final_factor
    match cfg.lr_schedule:
        case "constant":
            factor = 1.0
        case "cosine":
            factor = f + (1 - f) * 0.5 * (1 + math.cos(math.pi * p))
        case "exponential":
            factor = f**p if f > 0 else 1.0 - p
    return cfg.lr * factor


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
