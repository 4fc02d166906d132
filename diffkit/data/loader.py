"""Batches by slicing an in-memory uint8 tensor: no per-item decode, no worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from diffkit.data.images import ImageData, to_uint8, to_unit_range
from diffkit.errors import DataError

__all__ = ["TensorBatches", "to_uint8", "to_unit_range"]  # the conversions live in images.py


def epoch_order(seed: int, epoch: int, n: int, rank: int = 0, world: int = 1) -> Tensor:
    """The indices rank ``rank`` of ``world`` visits in ``epoch``: every ``world``-th of a
    permutation of ``n`` seeded by ``(seed, epoch)``. The one shuffle of every batcher, so
    in-memory and memory-mapped data give the same batches and any position can be
    resumed."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)[rank::world]


def full_batches(n: int, batch_size: int, world: int) -> int:
    """The full batches of ``batch_size`` each of ``world`` ranks gets from ``n`` items,
    the same for every rank; DataError when a rank's share is less than one batch."""
    per_rank = n // world
    if per_rank < batch_size:
        raise DataError(f"batch size {batch_size} is larger than the {per_rank} images per process")
    return per_rank // batch_size


class TensorBatches:
    """Shuffled, sharded mini-batches of an :class:`ImageData` held on ``device``.

    Epoch ``e`` uses the permutation seeded by ``(seed, e)``, so any (epoch, batch) position
    can be reproduced, which is what exact resume needs. With ``world > 1`` each rank takes
    every ``world``-th index; all ranks get the same number of full batches.
    """

    def __init__(
        self,
        data: ImageData,
        batch_size: int,
        *,
        seed: int,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.batches_per_epoch = full_batches(len(data), batch_size, world)
        self.images = data.images.to(device)
        self.labels = data.labels.to(device) if data.labels is not None else None
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world

    def __len__(self) -> int:
        return self.batches_per_epoch

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Yield ``(x, y: (B,) or None)`` from batch ``start``: uint8 images become float
        (B, C, H, W) in [-1, 1]; float data (e.g. latents, (B, ...)) pass through."""
        perm = epoch_order(self.seed, epoch, len(self.images), self.rank, self.world)
        for i in range(start, self.batches_per_epoch):
            idx = perm[i * self.batch_size : (i + 1) * self.batch_size].to(self.images.device)
            y = self.labels[idx] if self.labels is not None else None
            x = self.images[idx]
            yield (to_unit_range(x) if x.dtype == torch.uint8 else x), y
