"""Sample folders: ``grid.png``, shards ``samples-NNNNN.safetensors`` and ``sample.json``.

:class:`SampleWriter` streams batches into shards of at most ``shard_size`` images, so a
million samples need one batch of memory, and builds the folder under a hidden sibling
name that replaces the destination only when the last file is whole: an interrupted or
failed run leaves any earlier folder at that path exactly as it was.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diffkit.runs.layout import _UMASK, atomic_write_bytes, write_json

SHARD_PATTERN = "samples-[0-9]*.safetensors"
GRID_MAX = 256  # images in grid.png: a 16 x 16 grid is still readable
SHARD_SIZE = 4096  # images per shard: 12 MB of float32 MNIST, 50 MB of 32 x 32 RGB


def shard_name(index: int) -> str:
    return f"samples-{index:05d}.safetensors"


def sample_shards(folder: Path) -> list[Path]:
    """The shard files of a samples folder, in order (by number: past 99999 the names
    grow a digit)."""
    found = [p for p in Path(folder).glob(SHARD_PATTERN) if p.name[8:-12].isdigit()]
    return sorted(found, key=lambda p: int(p.name[8:-12]))


def read_samples(folder: Path) -> dict[str, Tensor]:
    """Every shard of a samples folder concatenated: ``samples`` (N, C, H, W) and, when
    stored, ``labels`` (N,). For tests and small folders: it holds all of them in memory."""
    from safetensors.torch import load_file

    parts = [load_file(str(p)) for p in sample_shards(folder)]
    if not parts:
        raise FileNotFoundError(f"no {SHARD_PATTERN} in {folder}")
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class SampleWriter:
    """Write a samples folder batch by batch; :meth:`publish` makes it appear at ``out``.

    grid.png shows the first :data:`GRID_MAX` images; with ``class_names`` it is a class
    grid (one column per class, headed by its name, as training previews are) of at most
    ``grid_rows`` images of each class. ``grid=False`` writes none: the caller puts its
    own grid.png (and any other file of its own) into :attr:`tmp` before :meth:`publish`,
    as ``diffkit edit`` does. The shards hold every image either way, in the order they
    were added."""

    def __init__(
        self,
        out: Path,
        *,
        shard_size: int | None = None,
        overwrite: bool = False,
        class_names: Sequence[str] | None = None,
        grid_rows: int | None = None,
        grid: bool = True,
    ) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        self.shard_size = shard_size or SHARD_SIZE
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(dir=self.out.parent, prefix=f".{self.out.name}."))
        self.tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes it private; the result is not
        self.grid: list[Tensor] = []
        self.grid_labels: list[Tensor] = []
        self.class_names = class_names
        self.grid_rows = grid_rows
        self.keep_grid = grid
        self._in_grid: dict[int, int] = {}  # images of each class kept for a class grid
        self.files: list[str] = []
        self._pending: list[tuple[Tensor, Tensor | None]] = []
        self._pending_n = 0
        self.count = 0

    def add(self, images: Tensor, labels: Tensor | None) -> None:
        """Append a batch: images (B, C, H, W), labels (B,) or None."""
        self._keep_for_grid(images, labels)
        self._pending.append((images, labels))
        self._pending_n += images.shape[0]
        self.count += images.shape[0]
        while self._pending_n >= self.shard_size:
            self._flush(self.shard_size)

    def _keep_for_grid(self, images: Tensor, labels: Tensor | None) -> None:
        """Keep copies of the batch's images that grid.png will show."""
        if not self.keep_grid:
            return
        if self.class_names is not None and self.grid_rows is not None and labels is not None:
            keep = []
            for i, y in enumerate(labels.tolist()):
                if self._in_grid.get(y, 0) < self.grid_rows:
                    self._in_grid[y] = self._in_grid.get(y, 0) + 1
                    keep.append(i)
            images, labels = images[keep], labels[keep]
        room = GRID_MAX - sum(g.shape[0] for g in self.grid)
        if room > 0 and images.shape[0]:
            self.grid.append(images[:room].clone())
            if labels is not None:
                self.grid_labels.append(labels[:room].clone())

    def _flush(self, n: int) -> None:
        """Write the first ``n`` pending images as the next shard."""
        from safetensors.torch import save

        images = torch.cat([b for b, _ in self._pending])
        labels = None if self._pending[0][1] is None else torch.cat([y for _, y in self._pending])
        tensors = {"samples": images[:n].contiguous()}
        if labels is not None:
            tensors["labels"] = labels[:n].contiguous()
        name = shard_name(len(self.files))
        atomic_write_bytes(self.tmp / name, save(tensors))
        self.files.append(name)
        rest = (images[n:], None if labels is None else labels[n:])
        self._pending = [rest] if rest[0].shape[0] else []
        self._pending_n = rest[0].shape[0]

    def publish(self, meta: dict[str, Any], nrow: int | None = None) -> Path:
        """Write the last shard, grid.png and sample.json, then move the folder into place
        (replacing ``out`` only with ``overwrite``)."""
        from diffkit.runs.plots import save_class_grid, save_grid

        if self._pending_n:
            self._flush(self._pending_n)
        if self.grid and self.class_names is not None and self.grid_labels:
            grid, labels = torch.cat(self.grid), torch.cat(self.grid_labels)
            save_class_grid(grid, labels, self.tmp / "grid.png", self.class_names)
        elif self.grid:
            save_grid(torch.cat(self.grid), self.tmp / "grid.png", nrow=nrow)
        write_json(self.tmp / "sample.json", meta | {"files": self.files})
        old = None
        if self.out.exists():
            if not self.overwrite:
                raise FileExistsError(f"{self.out} appeared while sampling; kept it")
            old = self.out.with_name(f".{self.out.name}.old-{self.tmp.name}")
            self.out.rename(old)  # the new folder replaces it in the next rename
        self.tmp.rename(self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def discard(self) -> None:
        """Remove the unfinished folder (after an error or Ctrl-C)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
