"""Process-group set-up for ``torchrun``: gloo on CPU, nccl on CUDA."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def dist_from_env() -> DistInfo:
    """Rank and world size as ``torchrun`` sets them (1 process when not under torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_process_group(info: DistInfo, device: torch.device) -> None:
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, rank=info.rank, world_size=info.world)


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world
    return value


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True if ``flag`` is set on any rank (so all ranks stop at the same step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


STOP_VOTE_EVERY = 10
"""Steps between the ranks' votes on whether to stop (see :func:`stop_agreed`)."""


def stop_agreed(
    flag: bool, step: int, info: DistInfo, device: torch.device, every: int = STOP_VOTE_EVERY
) -> bool:
    """Whether the loop stops after ``step``, given this rank's ``flag`` (a signal came).

    One process: ``flag`` itself, at every step. Several: a vote (:func:`any_rank`) only
    when ``step`` is a multiple of ``every``. The vote's result is read on the host, which
    waits for the GPU to finish every queued kernel; at every step that would stall the
    GPU once a step. ``step`` is the same on every rank, so every rank votes at the same
    steps and all stop at the same one, at most ``every - 1`` steps after the signal."""
    if not info.enabled:
        return flag
    if step % every:
        return False
    return any_rank(flag, info, device)


def broadcast_object(obj: object, info: DistInfo) -> object:
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def destroy() -> None:
    """Tear the process group down, after collecting the garbage that may still hold it: a
    finished trainer's DistributedDataParallel sits in a reference cycle until the cyclic
    collector runs, and its reducer outliving the group aborted the process at exit."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
