"""docs/python.md runs as written: its python blocks, in order, in one namespace (as a
reader pastes them into one session), in a fresh folder, on MNIST's first images.

The page says ``data_dir="data"``; the test names the test data instead, and nothing else
of the page is changed. Skipped without ``DIFFKIT_TEST_DATA_DIR`` (the page trains, samples,
scores and edits: about half a minute on 2 cores)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "python.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
DATA = 'data_dir="data"'


def blocks() -> list[str]:
    return BLOCK.findall(PAGE.read_text(encoding="utf-8"))


def test_the_page_has_a_block_per_section():
    text = PAGE.read_text(encoding="utf-8")
    for heading in ("## Train", "## Resume", "## Sample", "## Evaluate", "## Edit"):
        assert heading in text
    assert len(blocks()) >= 5 and sum(b.count(DATA) for b in blocks()) == 1


def test_the_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if not os.environ.get("DIFFKIT_TEST_DATA_DIR"):
        pytest.skip("DIFFKIT_TEST_DATA_DIR is not set")
    data = Path(os.environ["DIFFKIT_TEST_DATA_DIR"]).resolve()
    if not (data / "mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST IDX files not found under {data}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIFFKIT_RUNS_DIR")  # the page's runs go to ./runs, as it says
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks()):
        code = code.replace(DATA, f"data_dir={str(data)!r}")
        exec(compile(code, f"{PAGE.name}[block {i}]", "exec"), namespace)
    runs = tmp_path / "runs"
    assert {p.name for p in runs.iterdir()} >= {"ddpm", "classifier", "edit"}
    (run,) = (runs / "ddpm").iterdir()
    assert (run / "checkpoints" / "last.safetensors").is_file()
    assert list((run / "eval").glob("*.json")) and list((run / "samples").iterdir())
    assert namespace["result"].step == 4
