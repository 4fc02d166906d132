"""A class-conditional run on a labelled image folder, end to end: its class names are
recorded, sampling takes them by name, and still does once the folder is gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from diffkit.runs.samples import read_samples
from tests.cli.util import TINY, invoke, last_line


def _pets(root: Path) -> Path:
    """pets/cat and pets/dog: 8 small RGB images each (not square: they are cropped)."""
    for name, rgb in (("cat", (220, 40, 40)), ("dog", (40, 40, 220))):
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (20, 16), tuple(c + 3 * i for c in rgb)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> tuple[Path, Path]:
    """(the run, its image folder)."""
    root = tmp_path_factory.mktemp("folder")
    pets = _pets(root / "pets")
    config = root / "data.toml"
    config.write_text("[data]\nimage_size = 16\n")
    result = invoke("train", "ddpm", *TINY, "--cond", "class", "--dataset", f"folder:{pets}",
                    "--config", config, "--runs-dir", root / "runs")  # fmt: skip
    return last_line(result), pets


def test_the_run_records_its_classes(folder_run):
    from diffkit.runs.checkpoint import read_checkpoint_header

    run, _ = folder_run
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["class_names"] == ["cat", "dog"] and cfg["model"]["num_classes"] == 2
    assert cfg["model"]["in_channels"] == 3 and cfg["model"]["image_size"] == 16
    header = read_checkpoint_header(run / "checkpoints" / "last.safetensors")
    assert header.config["data"]["class_names"] == ["cat", "dog"]


def test_sample_by_class_name_before_and_after_the_folder_goes(folder_run, tmp_path: Path):
    run, pets = folder_run
    before = tmp_path / "before"
    result = invoke("sample", run, "--class", "dog", "-n", "2", "--steps", "2", "--out", before)
    assert result.exit_code == 0, result.output
    assert read_samples(before)["labels"].tolist() == [1, 1]
    assert read_samples(before)["samples"].shape == (2, 3, 16, 16)

    moved = tmp_path / "moved"
    shutil.move(pets, moved)  # the run no longer finds its folder
    after = tmp_path / "after"
    result = invoke("sample", run, "--class", "CAT,dog", "-n", "2", "--steps", "2",
                    "--grid-per-class", "--out", after)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_samples(after)["labels"].tolist() == [0, 0, 1, 1]
    result = invoke("sample", run, "--class", "bird", "--steps", "2")
    assert result.exit_code == 2 and "is not a class of folder:" in result.output
    assert "(cat, dog)" in result.output

    shutil.move(moved, pets)
    _pets(pets.parent / "more")  # another cat/dog folder, renamed into a third class
    shutil.move(pets.parent / "more" / "cat", pets / "bird")
    result = invoke("train", "ddpm", "--resume", run, "--max-steps", "6")
    assert result.exit_code == 2
    assert "now has classes bird, cat, dog; the run was trained with cat, dog" in result.output


def test_cond_class_needs_class_folders(tmp_path: Path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.new("RGB", (16, 16), (i, 0, 0)).save(flat / f"{i}.png")
    result = invoke("train", "ddpm", *TINY, "--cond", "class", "--dataset", f"folder:{flat}")
    assert result.exit_code == 2 and "has no class labels" in result.output

    _pets(tmp_path / "mixed")
    Image.new("RGB", (16, 16)).save(tmp_path / "mixed" / "stray.png")
    result = invoke("train", "ddpm", *TINY, "--dataset", f"folder:{tmp_path / 'mixed'}")
    assert result.exit_code == 2 and "1 image(s) directly in it and 2 class folder(s)" in (
        result.output
    )


def test_a_classifier_has_one_output_per_class_of_its_folder(tmp_path: Path):
    import tomllib

    pets = _pets(tmp_path / "pets")
    config = tmp_path / "data.toml"
    config.write_text("[data]\nimage_size = 16\n")
    result = invoke("train", "classifier", "--dataset", f"folder:{pets}", "--config", config,
                    "--print-config")  # fmt: skip
    assert result.exit_code == 0, result.output
    model = tomllib.loads(result.stdout)["model"]
    assert (model["num_classes"], model["in_channels"], model["image_size"]) == (2, 3, 16)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (16, 16)).save(flat / "0.png")
    result = invoke("train", "classifier", "--dataset", f"folder:{flat}", "--print-config")
    assert result.exit_code == 2 and "a classifier needs two or more" in result.output
