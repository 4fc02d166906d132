"""The layout of a ``folder:PATH`` dataset: which image files it holds and their classes.

Two layouts, told apart by where the images are (by file suffix; nothing is decoded here):

* **flat**: images directly in PATH and no subfolder holding any: unlabelled;
* **ImageFolder**: no images directly in PATH, one subfolder per class (images anywhere
  below it): labelled, the classes being the sorted names of the subfolders that hold an
  image, a label the index of its image's class folder.

Images both directly in PATH and in class folders are refused (which one was meant is a
guess). Hidden files and folders (a name starting with ``.``) are left out everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from diffkit.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"})


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def _images_below(folder: Path) -> Iterator[Path]:
    """Image files anywhere below ``folder``, unordered and lazily (a caller that needs
    one stops at the first); hidden folders are not entered, symlinked ones not followed."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(root, name)
            if _is_image_name(name) and path.is_file():
                yield path


def _top_level(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files directly in ``folder``, its visible subfolders sorted by name)."""
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    loose: list[Path] = []
    subfolders: list[Path] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                subfolders.append(Path(entry.path))
            elif _is_image_name(entry.name) and entry.is_file():
                loose.append(Path(entry.path))
    return loose, sorted(subfolders, key=lambda p: p.name)


def _check_layout(folder: Path, loose: int, classes: list[str]) -> None:
    """A folder with no images, or with images both directly in it and in class folders,
    is a DataError saying what to change."""
    if loose and classes:
        shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise DataError(
            f"{folder} has {loose} image(s) directly in it and {len(classes)} class "
            f"folder(s) with images ({shown}): for labels move every image into a class "
            "folder, for none point folder: at a folder of images only"
        )
    if not loose and not classes:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")


def folder_class_names(folder: Path) -> tuple[str, ...]:
    """The class names of a folder dataset, () for a flat one: a directory scan that stops
    at the first image of each class folder (cheap enough for the CLI to call)."""
    loose, subfolders = _top_level(folder)
    classes = [d.name for d in subfolders if next(_images_below(d), None) is not None]
    _check_layout(folder, len(loose), classes)
    return tuple(classes)


def folder_items(folder: Path) -> tuple[list[Path], list[int] | None, tuple[str, ...]]:
    """(every image file, sorted by class then path; their labels, None for a flat folder;
    the class names). A class whose files all fail to decode later keeps its index."""
    loose, subfolders = _top_level(folder)
    found = {d.name: sorted(_images_below(d)) for d in subfolders}
    classes = [name for name, files in found.items() if files]
    _check_layout(folder, len(loose), classes)
    if not classes:
        return sorted(loose), None, ()
    paths = [p for name in classes for p in found[name]]
    labels = [i for i, name in enumerate(classes) for _ in found[name]]
    return paths, labels, tuple(classes)
