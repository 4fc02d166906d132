"""An ``-n`` or ``--batch-size`` too big for this machine's memory or disk is refused before
anything is allocated or written: exit 2, one ``error:`` line with the estimate and what is
available, nothing on stdout, no file or folder added or changed. The machine's memory and
disk are faked small (``diffkit.resources.available_memory`` / ``free_disk``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import diffkit.resources
from tests.cli.util import TINY, invoke, last_line, refused

MEMORY = 64 << 20  # 64 MB: the tiny models load (about 1.5 MB), a few images fit
BIG = 10**30


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_dir: Path) -> dict[str, Path]:
    """A tiny class-conditional DDPM, a ControlNet on it and a tiny rectified flow."""
    root = tmp_path_factory.mktemp("sizes")
    runs = root / "runs"
    common = ("--data-dir", data_dir, "--runs-dir", runs)
    cls = last_line(invoke("train", "ddpm", *TINY, "--cond", "class", *common))
    ctrl = last_line(invoke("train", "controlnet", "--base", cls, *TINY[2:], *common))
    flow = last_line(invoke("train", "rf", *TINY, *common))
    return {"root": root, "runs": runs, "cls": cls, "ctrl": ctrl, "flow": flow, "data": data_dir}


MEMORY_CASES = [
    "sample {cls} --class 0 --guidance 3 -n 1000 --batch-size 1000 --steps 1",
    "sample {cls} --grid-per-class -n 100 --guidance 3 --steps 1",
    "sample {ctrl} --hint mnist:test:0 -n 1000 --batch-size 1000 --steps 1",
    "edit anagram --model {cls} 0 1 -n 1000 --steps 1",
    "edit hybrid --model {cls} 0 1 -n 1000 --steps 1",
    "edit factorize --model {cls} 0 1 --sigmas 2 -n 1000 --steps 1",
    "edit inpaint --model {cls} --image mnist:test:0 --box 0,0,9,9 -n 1000 --steps 1",
    "edit inpaint --model {ctrl} --image mnist:test:0 --hint mnist:test:1 --box 0,0,9,9 "
    "-n 1000 --steps 1",
    "edit sample --model {cls} 0 1 -n 1000 --steps 1",
    "reflow make-pairs {flow} -n 100000 --shard-size 100000 --steps 1",
    "reflow make-pairs {flow} -n 1000 --batch-size 1000 --steps 1",
    "reflow straightness {flow} -n 100000 --steps 1",
]
DISK_CASES = [
    "sample {cls} -n 8 --steps 1",
    "sample {ctrl} --hint mnist:test:0 -n 8 --steps 1",
    "edit anagram --model {cls} 0 1 -n 8 --steps 1",
    "edit inpaint --model {cls} --image mnist:test:0 --box 0,0,9,9 -n 8 --steps 1",
    "edit sample --model {cls} 0 -n 8 --steps 1",
    "edit sdedit --model {cls} --image mnist:test:0 --start 1,3 --steps 4",
    "edit denoise --model {cls} --image mnist:test:0 --start 2 --steps 4",
    "edit noise --image mnist:test:0",
    "reflow make-pairs {flow} -n 8 --steps 1",
]
HUGE_CASES = [
    f"sample {{cls}} -n {BIG} --steps 1",
    f"sample {{cls}} -n {BIG} --class 0 --guidance 3 --steps 1",
    f"sample {{cls}} -n {BIG} --grid-per-class --steps 1",
    f"sample {{ctrl}} --hint mnist:test:0 -n {BIG} --steps 1",
    f"sample {{cls}} -n {10**400} --steps 1",
    f"edit anagram --model {{cls}} 0 1 -n {BIG} --steps 1",
    f"edit inpaint --model {{cls}} --image mnist:test:0 --box 0,0,9,9 -n {BIG} --steps 1",
    f"edit sample --model {{cls}} 0 -n {BIG} --steps 1",
    f"reflow make-pairs {{flow}} -n {BIG} --steps 1",
    f"reflow straightness {{flow}} -n {BIG} --steps 1",
]


def _refused(world, line: str, monkeypatch, tmp_path: Path) -> str:
    """Run ``line`` (from the scratch folder, outputs under the world's runs) and check the
    refusal; its one line."""
    monkeypatch.chdir(tmp_path)
    line_ = refused(line, world, monkeypatch, folders=True)  # not even an empty folder
    assert "needs about" in line_, line_
    assert not any(tmp_path.iterdir())
    return line_


@pytest.mark.parametrize("line", MEMORY_CASES)
def test_a_batch_too_big_for_memory_is_refused(world, line: str, monkeypatch, tmp_path):
    monkeypatch.setattr(diffkit.resources, "available_memory", lambda: MEMORY)
    monkeypatch.setattr(diffkit.resources, "free_disk", lambda path: 1 << 50)
    error = _refused(world, line, monkeypatch, tmp_path)
    assert "of memory; 64 MB is available" in error, error
    assert "per image" in error or "per pair" in error, error


@pytest.mark.parametrize("line", DISK_CASES)
def test_outputs_too_big_for_the_disk_are_refused(world, line: str, monkeypatch, tmp_path):
    monkeypatch.setattr(diffkit.resources, "free_disk", lambda path: 10_000)
    error = _refused(world, line, monkeypatch, tmp_path)
    assert "of disk; 9.77 KB is free at" in error


@pytest.mark.parametrize("line", HUGE_CASES, ids=[c[:60] for c in HUGE_CASES])
def test_an_overflowing_n_is_one_line(world, line: str, monkeypatch, tmp_path):
    _refused(world, line, monkeypatch, tmp_path)


def test_guidance_and_hints_raise_the_estimate(world):
    from diffkit.app.room import check_sampling_memory
    from diffkit.methods.load import load_pipeline

    pipe = load_pipeline(world["cls"])
    plain = check_sampling_memory(pipe, 1)
    assert check_sampling_memory(pipe, 1, rows=2) > plain
    assert check_sampling_memory(pipe, 1, hinted=True) > plain


def test_reasonable_requests_still_run_under_the_same_limit(world, monkeypatch, tmp_path):
    monkeypatch.setattr(diffkit.resources, "available_memory", lambda: MEMORY)
    monkeypatch.setenv("DIFFKIT_DATA_DIR", str(world["data"]))
    out = last_line(invoke("sample", world["cls"], "-n", "4", "--class", "0", "--guidance", "3",
                           "--steps", "1", "--out", tmp_path / "s"))  # fmt: skip
    assert (out / "sample.json").is_file()
    edit = last_line(invoke("edit", "anagram", "--model", world["cls"], "0", "1", "-n", "2",
                            "--steps", "1", "--out", tmp_path / "a"))  # fmt: skip
    assert (edit / "edit.json").is_file()
    pairs = last_line(invoke("reflow", "make-pairs", world["flow"], "-n", "4", "--steps", "1",
                             "--runs-dir", tmp_path / "runs"))  # fmt: skip
    assert (pairs / "pairs.json").is_file()
