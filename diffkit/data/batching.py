"""The batcher a training run gets for its data: in memory, or memory-mapped."""

from __future__ import annotations

import torch

from diffkit.data.loader import TensorBatches
from diffkit.data.prepared import MappedBatches, MappedImageData
from diffkit.data.registry import ImageData


def make_batches(
    data: ImageData,
    batch_size: int,
    *,
    seed: int,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
) -> TensorBatches | MappedBatches:
    """:class:`TensorBatches` for data in memory, or for a memory-mapped prepared split
    :class:`MappedBatches` (rows gathered from the map; worker processes and pinned
    memory when training on a GPU), which draws the same batches in the same order."""
    if isinstance(data, MappedImageData):
        return MappedBatches(data, batch_size, seed=seed, device=device, rank=rank, world=world)
    return TensorBatches(data, batch_size, seed=seed, device=device, rank=rank, world=world)
