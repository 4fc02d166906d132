"""The memory and disk a command that draws ``-n`` images needs, estimated from its model
before anything is allocated or written, so an impossible ``-n`` or ``--batch-size`` is
refused in one line with its size (:mod:`diffkit.resources`) instead of crashing in the
allocator or filling the disk.

One estimate serves ``diffkit sample``, the edit operations and ``reflow make-pairs``:
per image, the model's sample and its decoded image (:func:`~diffkit.resources.sampling_bytes`),
the network rows it takes (classifier-free guidance doubles them, a composed edit has one
per prompt), what each row carries (a ControlNet's hint, a text model's prompt embeddings,
the network's widest feature maps), and what is held for all ``n`` images at once (their
labels and hints)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from diffkit.resources import FLOAT, check_disk, check_memory, human_bytes, sampling_bytes

LABEL = 8  # an int64 class label
FEATURE_MAPS = 4  # feature maps of base_channels at full resolution alive at once, per row
TEXT_TOKENS = 77  # diffkit.external.text.MAX_TOKENS (not imported: it loads transformers)
PNG_OVERHEAD = 1024  # headers and a poorly compressing image, per PNG file


def image_shape_of(pipe: Any) -> tuple[int, ...]:
    """(C, H, W) of the images ``pipe`` writes: its dataset's, or a foreign model's sample."""
    if pipe.config is not None:
        from diffkit.data.registry import image_shape

        channels, size = image_shape(pipe.config.data)
        return (channels, size, size)
    return tuple(pipe.model.sample_shape)


def _row_extra(pipe: Any, hinted: bool) -> int:
    """Bytes each network row carries besides the sample."""
    shape = tuple(pipe.model.sample_shape)
    extra = 0
    base = getattr(getattr(pipe.config, "model", None), "base_channels", None)
    if isinstance(base, int):
        extra += FEATURE_MAPS * base * FLOAT * math.prod(shape[1:])
    if hinted:
        extra += FLOAT * math.prod(image_shape_of(pipe)[1:])
    if getattr(pipe.model, "conditioning", None) == "text":
        cfg = getattr(getattr(pipe.model, "net", None), "config", None)
        dim = getattr(cfg, "encoder_hid_dim", None) or getattr(cfg, "cross_attention_dim", None)
        if isinstance(dim, int):
            extra += FLOAT * TEXT_TOKENS * dim
    return extra


def image_bytes(pipe: Any, *, rows: int = 1, hinted: bool = False) -> int:
    """Bytes of memory one image of a batch costs while ``pipe`` draws it under ``rows``
    network rows (``hinted``: with a ControlNet's hint in each)."""
    return sampling_bytes(pipe.model.sample_shape, image_shape_of(pipe), rows=rows,
                          row_extra=_row_extra(pipe, hinted))  # fmt: skip


def check_sampling_memory(pipe: Any, n: int, batch_size: int | None = None, *, rows: int = 1,
                          labelled: bool = False, hinted: bool = False, held: int = 0,
                          what: str | None = None) -> int:  # fmt: skip
    """Refuse (ResourceError) drawing ``n`` images ``batch_size`` at a time (None: all at
    once) with ``rows`` network rows each, if one batch and what is held for all ``n``
    (``labelled``: their class labels, ``hinted``: their hint maps, and ``held`` bytes
    each) cannot fit in memory. Returns the bytes per image."""
    per = image_bytes(pipe, rows=rows, hinted=hinted)
    held += (LABEL if labelled else 0) + (
        FLOAT * math.prod(image_shape_of(pipe)[1:]) if hinted else 0
    )
    batch = n if batch_size is None else min(n, batch_size)
    if what is None:
        what = f"-n {n}" if batch_size is None or n <= batch_size else f"--batch-size {batch_size}"
    notes = [f"{human_bytes(per)} per image"]
    if rows > 1:
        notes.append(f"{rows} network rows each")
    check_memory(batch * per + n * held, f"{what} ({', '.join(notes)})")
    return per


def check_images_disk(n: int, image: tuple[int, ...], folder: Path, *, pngs: int = 0,
                      grid: int = 0, extra: int = 0, what: str | None = None) -> None:  # fmt: skip
    """Refuse (ResourceError) writing ``n`` float32 images of shape ``image`` into
    ``folder`` (shards), with ``pngs`` of them as PNG files, a grid.png of ``grid`` images
    and ``extra`` bytes more, if its disk has less free (``what``: the request, for the
    message; default ``-n N``)."""
    pixels = math.prod(image)
    per = FLOAT * pixels
    need = n * per + pngs * (pixels + PNG_OVERHEAD) + grid * pixels + extra
    check_disk(need, folder, f"{what or f'-n {n}'} ({per} bytes per image)")


def check_edit_room(pipe: Any, n: int, out: Path | None, runs_dir: Path, *, rows: int = 1,
                    grid: int | None = None, hinted: bool = False,
                    image: tuple[int, ...] | None = None,
                    what: str | None = None) -> None:  # fmt: skip
    """An edit's ``n`` outputs, drawn at once under ``rows`` network rows each, and its
    folder (shards, one PNG each and a grid of ``grid`` images, default ``n``) under
    ``out`` or ``runs_dir/edit``: refused if they cannot fit. Without a model (``pipe``
    None) only the disk is checked, for images of shape ``image``. ``what`` names the
    request in the message (default ``-n N``)."""
    shape = image or image_shape_of(pipe)
    check_images_disk(n, shape, out.parent if out is not None else runs_dir / "edit", pngs=n,
                      grid=n if grid is None else grid, extra=64 * 1024, what=what)  # fmt: skip
    if pipe is None:  # the image, its noise and the noised copy, per output
        check_memory(3 * n * FLOAT * math.prod(shape), f"{what or f'-n {n}'} (shape {list(shape)})")
    else:
        check_sampling_memory(pipe, n, rows=rows, labelled=pipe.num_classes is not None,
                              hinted=hinted, what=what)  # fmt: skip
